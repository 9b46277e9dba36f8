"""Push kernels, wait for them, pull their output and log; import a public notebook."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from kagflow.errors import HubError, NotFoundError, RefusedError
from kagflow.hub.errors import checked
from kagflow.hub.gateway import Gateway, epoch_seconds
from kagflow.hub.retry import WaitPolicy, poll_until  # noqa: F401 - WaitPolicy re-exported
from kagflow.rules import metadata, slugs
from kagflow.rules.kaggle import DEFAULT_ACCELERATOR

DONE = {"COMPLETE"}
FAILED = {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}


@dataclass(frozen=True)
class PushResult:
    handle: slugs.KernelHandle
    version: int
    pushed: bool
    digest: str


def content_digest(folder: Path) -> str:
    """Digest of what a push sends: kernel-metadata.json and the code file's cell sources."""
    meta = metadata.read_metadata(folder / metadata.KERNEL_METADATA)
    code = folder / meta["code_file"]
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "id_no"}, sort_keys=True).encode())
    h.update(_code_text(code.read_text(encoding="utf-8"), code.suffix).encode())
    return h.hexdigest()


def _code_text(text: str, suffix: str) -> str:
    if suffix != ".ipynb":
        return text
    nb = json.loads(text)
    return "\n\x1e".join("".join(c.get("source", "")) for c in nb.get("cells", []))


def stamp_notebook(folder: Path, digest: str) -> None:
    """Record the content digest in the notebook's metadata so a pulled copy tells what was pushed."""
    meta = metadata.read_metadata(folder / metadata.KERNEL_METADATA)
    code = folder / meta["code_file"]
    if code.suffix != ".ipynb":
        return
    nb = json.loads(code.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {}).setdefault("kagflow", {})["content_digest"] = digest
    code.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def remote_kernel(gw: Gateway, handle: slugs.KernelHandle):
    """The server's GetKernel response for ``handle`` (None if it does not exist)."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    def get():
        with gw.api.build_kaggle_client() as kaggle:
            request = ApiGetKernelRequest()
            request.user_name = handle.owner
            request.kernel_slug = handle.slug
            return kaggle.kernels.kernels_api_client.get_kernel(request)

    try:
        return gw.call(get, what="get kernel", handle=str(handle))
    except NotFoundError:
        return None


SOURCE_KINDS = ("dataset", "model", "competition", "kernel")


def remote_competitions(gw: Gateway, handle: slugs.KernelHandle) -> Optional[list[str]]:
    """The competition sources of the kernel's latest version on the server, sorted (None: no such kernel)."""
    response = remote_kernel(gw, handle)
    if response is None or response.metadata is None:
        return None
    listed = getattr(response.metadata, "competition_data_sources", None) or []
    return sorted(normalise_source("competition", s) for s in listed)


def invalid_sources(response) -> list[str]:
    """``kind source`` for each source a SaveKernel response says was not added (Kaggle saves the version anyway)."""
    out = []
    for kind in SOURCE_KINDS:
        for ref in getattr(response, f"invalid_{kind}_sources", None) or []:
            out.append(f"{kind} {ref}")
    return out


def check_sources_accepted(gw: Gateway, handle: slugs.KernelHandle, version: int, response) -> None:
    """Raise one RefusedError naming every source the server refused, and how to fix it."""
    bad = invalid_sources(response)
    if bad:
        raise RefusedError(f"{handle} version {version} was saved without {len(bad)} source(s) "
                           f"{gw.endpoint.describe()} "
                           "refused: " + ", ".join(bad),
                           context="each one names nothing there, or something private to another user "
                                   "(a kernel may mount only what its owner can see)",
                           hint=f"publish each missing source as {handle.owner} (or make it public), or fix the "
                                "sources in kagflow.toml, then push again (kagflow kernel push)",
                           handle=str(handle), target=gw.endpoint.describe())


def _sources_missing(meta: dict, remote_metadata) -> bool:
    """True when the remote kernel lacks a source the local metadata asks for (it was refused at push)."""
    for kind in SOURCE_KINDS:
        listed = getattr(remote_metadata, f"{kind}_data_sources", None) if remote_metadata is not None else None
        wanted = meta.get(f"{kind}_sources") or []
        if listed is None or not wanted:
            continue
        try:
            have = {normalise_source(kind, s) for s in listed}
            if any(normalise_source(kind, s) not in have for s in wanted):
                return True
        except Exception:  # noqa: BLE001 - an unreadable listing never forces a duplicate push
            continue
    return False


def remote_digest(gw: Gateway, handle: slugs.KernelHandle, meta: Optional[dict] = None
                  ) -> tuple[Optional[str], Optional[int]]:
    """(content digest stamped in the latest pushed notebook, its version number).

    With ``meta`` (the local kernel-metadata), a remote version that lacks one of its sources (the
    server refused it at push time) reports no digest, so the next push sends it again.
    """
    response = remote_kernel(gw, handle)
    if response is None or response.blob is None:
        return None, None
    if meta is not None and _sources_missing(meta, response.metadata):
        return None, getattr(response.metadata, "current_version_number", None)
    version = getattr(response.metadata, "current_version_number", None) if response.metadata else None
    try:
        nb = json.loads(response.blob.source or "")
        return nb.get("metadata", {}).get("kagflow", {}).get("content_digest"), version
    except ValueError:
        return None, version


def push_kernel(gw: Gateway, folder: Path, *, accelerator: Optional[str] = None,
                timeout: Optional[int] = None, force: bool = False,
                before_push: Optional[Callable[[], object]] = None) -> PushResult:
    """Push ``folder`` as a new kernel version unless the latest version has the same content
    (``force``: push anyway, a deliberate re-run). ``before_push`` runs only when a version will be
    pushed (the quota guard), and may raise to stop it."""
    folder = Path(folder)
    meta = metadata.read_metadata(folder / metadata.KERNEL_METADATA)
    handle = slugs.KernelHandle.parse(meta["id"])
    digest = content_digest(folder)
    stamp_notebook(folder, digest)
    remote, version = remote_digest(gw, handle, meta)
    if remote == digest and version and not force:
        gw.log(f"{handle} version {version} already has this content: not pushed again")
        return PushResult(handle, int(version), False, digest)
    if before_push is not None:
        before_push()

    def already_pushed():
        found, found_version = remote_digest(gw, handle)
        if force and found_version == version:  # the forced push has not landed yet
            return None
        return PushResult(handle, int(found_version), True, digest) if found == digest and found_version else None

    responses = []

    def push():
        response = checked(gw.api.kernels_push(str(folder), timeout=str(timeout) if timeout else None,
                                               acc=accelerator))
        responses.append(response)
        return PushResult(handle, int(response.version_number or 0), True, digest)

    gw.log(f"pushing a new version of {handle}" if version else f"pushing {handle}")
    result = gw.call(push, what="push kernel", handle=str(handle), before_retry=already_pushed)
    # Kaggle answers 404 for a new kernel for a few seconds: its status would be "not found" until then
    shown = gw.settle(lambda: remote_kernel(gw, handle), what="get kernel", handle=str(handle),
                      ready=lambda r: r is not None and (getattr(r.metadata, "current_version_number", 0) or 0)
                      >= (result.version or 1))
    if not result.version:
        result = PushResult(handle, int(shown.metadata.current_version_number), True, digest)
    if responses:
        check_sources_accepted(gw, handle, result.version, responses[-1])
    return result


@dataclass(frozen=True)
class KernelStatus:
    status: str
    failure_message: str = ""

    @property
    def done(self) -> bool:
        return self.status in DONE or self.status in FAILED


def kernel_status(gw: Gateway, handle: slugs.KernelHandle, version: Optional[int] = None) -> KernelStatus:
    ref = f"{handle.owner}/{handle.slug}" + (f"/{version}" if version else "")
    response = gw.call(lambda: gw.api.kernels_status(ref), what="kernel status", handle=ref)
    status = response.status
    name = getattr(status, "name", str(status)).replace("KERNEL_WORKER_STATUS_", "")
    return KernelStatus(name.upper(), response.failure_message or "")


def wait_kernel(gw: Gateway, handle: slugs.KernelHandle, version: Optional[int] = None, *,
                timeout: float = 9 * 3600, on_poll: Optional[Callable[[KernelStatus, float], None]] = None,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
                ) -> KernelStatus:
    """Poll until the kernel version is COMPLETE/ERROR/CANCELLED (exponential backoff, capped).

    Transient errors are retried by the gateway; a timeout raises HubError and leaves the kernel
    running. Ctrl-C propagates as KeyboardInterrupt (the caller prints how to resume).
    """
    def timed_out(status: KernelStatus, elapsed: float) -> HubError:
        return HubError(f"{handle} is still {status.status} after {elapsed:.0f}s",
                        context=f"kernel {handle} version {version}",
                        hint=f"it keeps running; wait again with `kagflow kernel status {handle.slug} --wait`")

    return poll_until(lambda: kernel_status(gw, handle, version), lambda st: st.done, timeout=timeout,
                      on_poll=on_poll, on_timeout=timed_out, sleep=sleep, clock=clock)


def output_dir(kernel_folder: Path, version: int) -> Path:
    return Path(kernel_folder) / "output" / f"v{version}"


def pull_output(gw: Gateway, handle: slugs.KernelHandle, version: int, kernel_folder: Path) -> tuple[Path, bool]:
    """Download version ``version``'s output and log into ``kernels/<slug>/output/v<N>/``.

    Never overwrites: an existing complete folder is kept as it is (returns pulled=False); a
    download goes to a temporary folder first and is renamed into place when whole.
    """
    dest = output_dir(kernel_folder, version)
    if (dest / ".complete").is_file():
        return dest, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=dest.parent))
    try:
        ref = f"{handle.owner}/{handle.slug}/{version}"
        gw.call(lambda: gw.api.kernels_output(ref, str(partial), force=True, quiet=True),
                what="download kernel output", handle=ref)
        (partial / ".complete").write_text(json.dumps({"kernel": ref, "time": time.time()}))
        if dest.exists():  # an incomplete earlier attempt: keep it aside, never delete user data silently
            shutil.move(str(dest), str(dest.with_name(dest.name + f".incomplete-{int(time.time())}")))
        os.replace(partial, dest)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return dest, True


def log_entries(raw: str) -> list[dict]:
    """The one parser of Kaggle's kernel log: a JSON list of {stream_name, time, data} gives its
    entries (anything but an object in it is skipped); plain text, or JSON that is not a list, is
    one entry holding it whole; an empty log has none."""
    try:
        entries = json.loads(raw)
    except ValueError:
        entries = None
    if isinstance(entries, list):
        return [e for e in entries if isinstance(e, dict)]
    return [{"data": raw}] if raw else []


def log_text(log_path: Path) -> str:
    """A pulled kernel log file as plain text: its entries' data, in order."""
    raw = Path(log_path).read_text(encoding="utf-8", errors="replace")
    return "".join(str(e.get("data", "")) for e in log_entries(raw))


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- import

_SOURCE_PREFIXES = ("datasets/", "models/", "competitions/", "code/", "kernels/", "notebooks/")


def normalise_source(kind: str, value: str) -> str:
    """One source string of a pulled kernel-metadata.json in the form `kernels push` accepts.

    `kernels pull -m` writes what the server lists, e.g. ``datasets/owner/slug``,
    ``models/owner/model/Framework/instance/3`` or a full URL: strip the prefix, lowercase the
    framework, and parse with kagflow's handle rules.
    """
    text = value.strip()
    for marker in ("kaggle.com/",):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.strip("/")
    for prefix in _SOURCE_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    if kind == "dataset":
        return str(slugs.DatasetHandle.parse(text))
    if kind == "model":
        return slugs.model_source(text)
    if kind == "kernel":
        return str(slugs.KernelHandle.parse(text))
    return slugs.check_competition(text)


def pull_notebook(gw: Gateway, handle: slugs.KernelHandle, dest: Path) -> dict:
    """Pull a notebook with its metadata into ``dest`` and return the normalised metadata."""
    dest.mkdir(parents=True, exist_ok=True)
    gw.call(lambda: gw.api.kernels_pull(str(handle), str(dest), metadata=True, quiet=True),
            what="pull kernel", handle=str(handle))
    raw = metadata.read_metadata(dest / metadata.KERNEL_METADATA)
    return {
        "title": raw.get("title") or handle.slug,
        "code_file": raw.get("code_file"),
        "dataset_sources": [normalise_source("dataset", s) for s in raw.get("dataset_sources") or []],
        "model_sources": [normalise_source("model", s) for s in raw.get("model_sources") or []],
        "competition_sources": [normalise_source("competition", s) for s in raw.get("competition_sources") or []],
        "kernel_sources": [normalise_source("kernel", s) for s in raw.get("kernel_sources") or []],
        "enable_internet": bool(raw.get("enable_internet")),
        "machine_shape": raw.get("machine_shape") or (DEFAULT_ACCELERATOR if raw.get("enable_gpu") else "None"),
    }


# --------------------------------------------------------------------------- versions, logs

@dataclass(frozen=True)
class KernelVersion:
    """What the target says about one version of a kernel (GetKernel + its session status)."""

    handle: slugs.KernelHandle
    version: Optional[int]
    status: str
    failure_message: str = ""
    machine_shape: str = ""
    started: Optional[float] = None  # last_run_time as seconds since the epoch
    model_sources: tuple[str, ...] = ()


def kernel_version_info(gw: Gateway, handle: slugs.KernelHandle, version: Optional[int] = None
                        ) -> Optional[KernelVersion]:
    """Version ``version`` (default: the latest) of ``handle``, or None when it was never pushed."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    def get():
        with gw.api.build_kaggle_client() as kaggle:
            request = ApiGetKernelRequest()
            request.user_name = handle.owner
            request.kernel_slug = handle.slug
            if version:
                request.version_label = f"v{version}"
            return kaggle.kernels.kernels_api_client.get_kernel(request)

    try:
        response = gw.call(get, what="get kernel", handle=f"{handle}/{version or 'latest'}")
    except NotFoundError:
        return None
    meta = response.metadata
    number = getattr(meta, "current_version_number", None) or version
    status = kernel_status(gw, handle, number)
    return KernelVersion(handle, int(number) if number else None, status.status, status.failure_message,
                         getattr(meta, "machine_shape", "") or "",
                         epoch_seconds(getattr(meta, "last_run_time", None)),
                         tuple(getattr(meta, "model_data_sources", None) or ()))


def run_seconds(gw: Gateway, handle: slugs.KernelHandle, version: int) -> Optional[float]:
    """The run time of ``version`` as its log measured it (the last entry's time), None without a log."""
    ref = f"{handle.owner}/{handle.slug}/{version}"
    raw = gw.call(lambda: gw.api.kernels_logs(ref), what="kernel log", handle=ref)
    times = [e["time"] for e in log_entries(raw or "") if isinstance(e.get("time"), (int, float))]
    return float(max(times)) if times else None


class LogStreamPolicy:
    """Reconnects of ``follow_log`` (class constants; tests lower them), as the official client's
    ``kernels logs --follow``: give up after this many drops in a row without a new line."""

    MAX_FAILURES = 5
    RECONNECT_DELAY = 1.0


def follow_log(gw: Gateway, handle: slugs.KernelHandle, version: Optional[int], write: Callable[[str], None],
               *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Print the log of a running version as it is written until the run ends (the finished log at
    once). The official client's stream (``kernels_logs_stream``); the server replays from the start
    on a reconnect, so lines already written are skipped. Returns the number of entries written."""
    import requests

    ref = f"{handle.owner}/{handle.slug}" + (f"/{version}" if version else "")
    seen = failures = 0
    while True:
        before = seen
        try:
            for index, event in enumerate(gw.api.kernels_logs_stream(ref)):
                if index < seen:
                    continue
                seen = index + 1
                data = event.get("data")
                if data is not None:
                    write(data if data.endswith("\n") else data + "\n")
            return seen
        except requests.exceptions.RequestException as exc:
            failures = failures + 1 if seen == before else 1
            if failures >= LogStreamPolicy.MAX_FAILURES:
                raise HubError(f"the log stream of {ref} dropped {failures} times with no new line",
                               context=f"{type(exc).__name__}: {exc}",
                               hint=f"follow it again: kagflow kernel logs {handle.slug} --follow") from None
            if failures > 1:
                gw.log(f"log stream of {ref} lost, reconnecting ({failures}/{LogStreamPolicy.MAX_FAILURES})")
            sleep(LogStreamPolicy.RECONNECT_DELAY)
        except ValueError as exc:  # the official client's word for 401/403
            raise NotFoundError(str(exc), hint="check the kernel name: kagflow kernel status NAME") from None


# --------------------------------------------------------------------------- accelerator quota

@dataclass(frozen=True)
class Quota:
    """This week's accelerator time (``kaggle quota``), in seconds."""

    kind: str  # "GPU" | "TPU"
    used: float
    allowed: float
    refresh: Optional[float] = None  # when it renews, seconds since the epoch

    @property
    def left(self) -> float:
        return max(0.0, self.allowed - self.used)


def accelerator_quota(gw: Gateway) -> dict[str, Quota]:
    """{"GPU": Quota, "TPU": Quota} for the caller (GetAcceleratorQuotaStatistics)."""
    response = gw.call(gw.api.quota_view, what="accelerator quota", handle=gw.username)
    refresh = epoch_seconds(response.quota_refresh_time)
    out = {}
    for kind, item in (("GPU", response.gpu_quota), ("TPU", response.tpu_quota)):
        if item is not None and item.total_time_allowed is not None:
            out[kind] = Quota(kind, (item.time_used.total_seconds() if item.time_used else 0.0),
                              item.total_time_allowed.total_seconds(),
                              refresh)
    return out

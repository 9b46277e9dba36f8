"""`kagflow check --online` (and `kagflow flow` before its first upload): what only the target can say.

The credentials, the competition, its rules accepted, the GPU (and TPU) hours the kernels need against the week's
quota, and the Kaggle models the kernels mount that their owner may gate. Each finding is ok, a problem, or
unknown (what the client cannot tell, said as such, never guessed).

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from kagflow.errors import KagflowError, NotFoundError, PermissionDeniedError
from kagflow.project.sources import resolve_sources
from kagflow.rules import kaggle, slugs

QUOTA = " quota"  # the ending of a quota finding's ``what`` ("GPU quota", "TPU quota", "accelerator quota")


@dataclass(frozen=True)
class Finding:
    what: str  # "credentials", "competition", "rules", "GPU quota", "model owner/slug", ...
    ok: Optional[bool]  # None: the client cannot tell
    message: str
    fix: str = ""

    def render(self) -> str:
        mark = {True: "ok", False: "problem", None: "unknown"}[self.ok]
        return f"{mark}: {self.what}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


def check_online(session) -> list[Finding]:
    """Every online finding for ``session``'s project on its target (its gateway is reached)."""
    found = [_credentials(session)]
    if found[0].ok is False:
        return found  # every other call would be refused the same way
    competition = _competition(session)
    found += competition
    found += list(_quota(session))
    found += list(_gated_models(session))
    return found


def preflight(session, log) -> None:
    """`kagflow flow` before its first upload: refuse on what would fail later (credentials, the competition, its
    rules, a model the kernels cannot mount); a quota estimate short of the need is a warning (the push guard
    decides per push, on the measured run time)."""
    findings = check_online(session)
    blocking = [f for f in findings if f.ok is False and not f.what.endswith(QUOTA)]
    for finding in findings:
        if finding.ok is False and finding not in blocking:
            log(f"[online] warning: {finding.what}: {finding.message}")
    if blocking:
        raise KagflowError(f"{len(blocking)} online problem(s) before the first upload; nothing uploaded",
                           context="\n".join(f.render() for f in blocking),
                           hint="fix them (kagflow check --online lists them), then run the flow again")
    log("[online] " + "; ".join(f"{f.what} {'ok' if f.ok else 'unknown'}" for f in findings))


def _credentials(session) -> Finding:
    from kagflow.hub.kernels import accelerator_quota

    gw = session.gateway
    try:
        accelerator_quota(gw)
    except PermissionDeniedError as e:
        return Finding("credentials", False, f"{session.target.label} refused the credentials of "
                       f"{gw.username}: {e.server_message or e.message}", e.hint or "check your Kaggle credentials")
    return Finding("credentials", True, f"accepted as {gw.username} on {session.endpoint.describe()}")


def _competition(session) -> list[Finding]:
    from kagflow.hub.competitions import competition_info

    slug = session.config.project.competition
    try:
        info = competition_info(session.gateway, slug)
    except NotFoundError:
        return [Finding("competition", False, f"no competition {slug!r} on {session.endpoint.describe()}",
                        f"check [project] competition in {session.config.path.name} (the slug in "
                        f"{kaggle.competition_url('<slug>')})")]
    found = [Finding("competition", True, f"{slug} ({info.title})")]
    if info.entered:
        found.append(Finding("rules", True, f"{session.gateway.username} has accepted the rules of {slug}"))
    else:
        found.append(Finding("rules", False, f"{session.gateway.username} has not accepted the rules of {slug}: "
                             "its data cannot be mounted or downloaded and no submission is taken",
                             session.target.rules_fix(slug)))
    return found


def _quota(session) -> Iterator[Finding]:
    """Each quota kind the kernels use: their estimated hours (the last run's, else the timeout) against the
    hours left this week."""
    from kagflow.errors import HubError
    from kagflow.hub.kernels import accelerator_quota
    from kagflow.workflow.gpu_quota import estimate_run, hours

    config, gw = session.config, session.gateway
    needs: dict[str, list[tuple[str, float]]] = {}
    for name, kernel in config.kernels.items():
        kind = kaggle.quota_kind(kernel.accelerator)
        if kind is not None:
            estimate = estimate_run(gw, config.kernel_handle(name), kernel.timeout)
            needs.setdefault(kind, []).append((name, estimate.seconds))
    if not needs:
        return
    try:
        quotas = accelerator_quota(gw)
    except HubError as e:
        yield Finding("accelerator quota", None, f"not reported ({e.message})")
        return
    for kind, kernels in sorted(needs.items()):
        quota = quotas.get(kind)
        what = f"{kind} quota"
        if quota is None:
            yield Finding(what, None, f"{session.endpoint.describe()} reports no {kind} quota")
            continue
        need = sum(seconds for _, seconds in kernels)
        each = ", ".join(f"{name} about {hours(seconds)}" for name, seconds in kernels)
        line = f"{hours(quota.left)} of {hours(quota.allowed)} left this week; the kernels need {each}"
        if need <= quota.left:
            yield Finding(what, True, line)
        else:
            yield Finding(what, False, line, "lower [kernels.NAME] timeout (the estimate for a kernel that never "
                                             "ran), or wait for the renewal (kagflow status shows when)")


def _gated_models(session) -> Iterator[Finding]:
    """The Kaggle models of other owners the kernels mount: visible or not; whether their owner gates them behind a
    consent form, and whether it was given, the client cannot read (Kaggle shows it on the model's page)."""
    from kagflow.hub.models import model_visible

    config, gw = session.config, session.gateway
    seen = set()
    for name in config.kernels:
        try:
            sources = resolve_sources(config, name)
        except KagflowError:
            continue  # reported by `kagflow check`
        for source in sources.model_sources:
            handle = slugs.ModelInstanceVersionHandle.parse(source)
            model = slugs.ModelHandle(handle.owner, handle.model)
            if handle.owner == gw.username or str(model) in seen:
                continue
            seen.add(str(model))
            url = f"{kaggle.KAGGLE_URL}/models/{model}"
            if model_visible(gw, model):
                yield Finding(f"model {model}", None, f"visible to {gw.username}; if its owner gates it (e.g. "
                              "Google's Gemma), whether you gave consent is not something the client can tell",
                              f"open {url} and accept its terms if it asks")
            else:
                yield Finding(f"model {model}", False, f"[kernels.{name}] mounts {source}, which "
                              f"{gw.username} cannot see (private, gated without consent, or absent)",
                              f"open {url}: request access or accept its terms, or fix the source")

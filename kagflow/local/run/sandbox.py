"""The Kaggle-shaped sandbox of a local kernel run, made with bubblewrap (``bwrap``).

Inside, a run sees Kaggle's folders::

    /kaggle/input     read-only: the run's inputs (see kagflow.local.run.mounts)
    /kaggle/working   its cwd; what it writes there is the run's output
    /kaggle/temp      scratch, kept with the run
    /kagflow          the runner's internals (notebook, result, kernelspec, the run's own site-packages)

and, read-only, the system folders (:data:`SYSTEM`: ``/usr``, ``/etc``, ``/opt``, ``/sys``...) and the
interpreter environments the run executes (``expose``: the kernel image, the executor's Python), each at its
own path and nothing else of them. ``/root`` (``HOME``) and ``/tmp`` are private and empty; ``/proc`` and
``/dev`` are the sandbox's own (GPUs' device nodes added). The host's homes, ``/var``, ``/run``, the server's data
folder and the project are not there; ``hide`` (the server's data folder, the users file, the project's
``.kagflow``) and the Kaggle credentials are covered where they lie inside an exposed folder.

The run is an unprivileged user: uid/gid 1000 (``kaggle``, home ``/root``) in a user namespace of its own, every
capability dropped, no further user namespaces. When the server is root, the sandbox starts as an unprivileged
host user (:data:`HOST_UID`, ``nobody``) so that the kernel's uid maps to it and not to host root: a root-owned
0600 file stays unreadable. (Its sources are first bound under a fresh ``/tmp`` of a private mount namespace,
:data:`STAGING`, because that user cannot reach them under ``/root``.)

Network: always a namespace of its own. ``internet="off"``: loopback only, no route out. ``"slirp"``: outbound
access through ``slirp4netns --disable-host-loopback`` started on the sandbox's pid, so the outside is
reachable and the host's loopback (the local server) is not. ``"host"``: the host's network (the single-user
fallback where slirp4netns is missing). ``--die-with-parent``: the sandbox ends with the runner.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from kagflow.local.env import USERS_ENV

BWRAP, SLIRP, SETPRIV, UNSHARE = "bwrap", "slirp4netns", "setpriv", "unshare"
KAGGLE_ROOT = Path("/kaggle")
INTERNAL = Path("/kagflow")
HOME = Path("/root")                   # Kaggle's HOME; private and empty in the sandbox
UID = GID = 1000                       # the kernel's user inside
USER = "kaggle"
HOST_UID = 65534                       # the unprivileged host user kernels run as when the server is root
SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "sys")
STAGE = Path("/tmp")                   # in the staging mount namespace: where the sandbox's sources are bound
# Runs as root in a private mount namespace (``unshare --mount``, which execs: the server stays the parent, so
# the sandbox dies with it): bind each source (argv pairs after the holding folder, up to ``--``) into a tmpfs
# on that folder, move it onto /tmp (reachable by the unprivileged user), then exec the rest.
STAGING = ('hold=$1; shift\n'
           'mkdir -p "$hold" && mount -t tmpfs -o mode=0755 kagflow-stage "$hold" || exit 125\n'
           'while [ "$1" != -- ]; do\n'
           '  if [ -d "$1" ]; then mkdir "$hold/$2"; else : > "$hold/$2"; fi && '
           'mount --bind "$1" "$hold/$2" || exit 125\n'
           '  shift 2\n'
           'done\n'
           'shift\n'
           'mount --move "$hold" /tmp || exit 125\n'
           'exec "$@"\n')
NAMESERVER = "10.0.2.3"                # slirp4netns's DNS forwarder
SETUP_TIMEOUT_S = 30.0
NS_GET_USERNS = 0xB701                 # ioctl: the user namespace owning a namespace


class SandboxError(Exception):
    """The sandbox (or its network) could not be set up; the message says why."""


@dataclass(frozen=True)
class Layout:
    """The host side of one run's sandbox."""

    input: Path
    working: Path
    temp: Path
    internal: Path
    log: Path
    etc: Path          # generated passwd, group, resolv.conf (root-owned, read-only inside)

    @classmethod
    def of(cls, root: Path) -> "Layout":
        """The runner's layout under ``root`` (see kagflow.local.run.runner)."""
        return cls(root / "input", root / "working", root / "temp", root / ".kagflow", root / "log.json", root / "etc")

    def writable(self) -> list[Path]:
        return [self.working, self.temp, self.internal, self.log]

    def write_etc(self) -> None:
        """The sandbox's user database (root, kaggle, nobody) and resolver (slirp4netns's DNS)."""
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "passwd").write_text(f"root:x:0:0:root:/root:/bin/bash\n{USER}:x:{UID}:{GID}:{USER}:{HOME}:"
                                         "/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        (self.etc / "group").write_text(f"root:x:0:\n{USER}:x:{GID}:\nnogroup:x:65534:\n")
        (self.etc / "resolv.conf").write_text(f"nameserver {NAMESERVER}\n")
        (self.etc / "empty").write_text("")  # what a hidden file reads as
        for name in ("passwd", "group", "resolv.conf", "empty"):
            os.chmod(self.etc / name, 0o644)


def run_as() -> Optional[int]:
    """The host uid a sandbox drops to: :data:`HOST_UID` when the server is root, else None (its own user)."""
    return HOST_UID if os.geteuid() == 0 else None


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
    """None when an unprivileged sandbox can be made here, else why not (one line, with the fix)."""
    missing = [tool for tool in (BWRAP, *((SETPRIV, UNSHARE) if run_as() is not None else ()))
               if not shutil.which(tool)]
    if missing:
        return (f"{' and '.join(missing)} not installed; on Debian/Ubuntu: apt-get install "
                + " ".join("bubblewrap" if t == BWRAP else "util-linux" for t in missing))
    return _probe("off")


@functools.lru_cache(maxsize=None)
def network_unavailable_reason() -> Optional[str]:
    """None when internet-on kernels can get a network of their own here (slirp4netns), else why not."""
    if not shutil.which(SLIRP):
        return "slirp4netns is not installed; on Debian/Ubuntu: apt-get install slirp4netns"
    return _probe("slirp")


def _probe(internet: str) -> Optional[str]:
    """Start a real sandbox running ``true``; None if it worked."""
    with tempfile.TemporaryDirectory(prefix="kagflow-probe-") as tmp:
        layout = Layout.of(Path(tmp))
        for path in (layout.input, layout.working, layout.temp, layout.internal):
            path.mkdir()
        layout.log.write_text("[]")
        layout.write_etc()
        if run_as() is not None:
            os.chmod(tmp, 0o755)
            for path in layout.writable():
                os.chown(path, run_as(), run_as())
        try:
            running = launch(["true"], layout, internet=internet, env={"PATH": "/usr/bin:/bin"},
                             stdout=subprocess.PIPE)
            out, _ = running.proc.communicate(timeout=SETUP_TIMEOUT_S)
            running.end()
        except SandboxError as exc:
            return str(exc)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap could not start: {exc}"
        if running.proc.returncode != 0:
            tail = out.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {running.proc.returncode}"]
            return f"bubblewrap cannot make an unprivileged sandbox here: {tail[0]}"
    return None


def credential_paths() -> list[Path]:
    """Where the official client keeps credentials and the users file lies: never visible to a kernel."""
    home = Path.home()
    paths = [home / ".kaggle", home / ".config" / "kaggle", home / ".ssh"]
    for var in ("KAGGLE_CONFIG_DIR", USERS_ENV):
        if os.environ.get(var):
            paths.append(Path(os.environ[var]))
    return paths


@dataclass
class Running:
    """A started sandbox: its process and, with ``internet="slirp"``, the slirp4netns serving its network (which
    exits when ``lifeline`` closes: with :meth:`end`, or with this process)."""

    proc: subprocess.Popen
    network: Optional[subprocess.Popen] = None
    lifeline: Optional[int] = None

    def end(self) -> None:
        if self.network is not None and self.network.poll() is None:
            self.network.kill()
            self.network.wait()
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None


def launch(argv: list[str], layout: Layout, *, internet: str, env: dict, prefix: Iterable[str] = (),
           hide: Iterable[Path] = (), expose: Iterable[Path] = (), stdout=None) -> Running:
    """Start ``argv`` in the sandbox (after ``prefix``, the limits' command); with ``internet="slirp"`` its
    network is connected before ``argv`` starts. Raises :class:`SandboxError` when that fails."""
    if internet != "slirp":
        cmd = [*prefix, *command(argv, layout, internet=internet, hide=hide, expose=expose)]
        return Running(subprocess.Popen(cmd, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                        stderr=subprocess.STDOUT, start_new_session=True))
    (info_r, info_w), (block_r, block_w) = os.pipe(), os.pipe()
    try:
        cmd = [*prefix, *command(argv, layout, internet=internet, hide=hide, expose=expose,
                                 fds={"info": info_w, "block": block_r})]
        try:
            proc = subprocess.Popen(cmd, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(info_w, block_r))
        finally:
            os.close(info_w)
            os.close(block_r)
        running = Running(proc)
        try:
            running.network, running.lifeline = _connect(proc, info_r, layout.internal.parent / "slirp4netns.log")
            os.write(block_w, b"1")  # the network is up: bwrap starts argv
        except (SandboxError, OSError) as exc:
            running.end()
            _kill(proc)
            raise SandboxError(str(exc)) from None
    finally:
        os.close(info_r)
        os.close(block_w)
    return running


def command(argv: list[str], layout: Layout, *, internet: str, hide: Iterable[Path] = (),
            expose: Iterable[Path] = (), fds: Optional[dict] = None) -> list[str]:
    """``argv`` wrapped in bwrap (see the module docstring); ``fds``: bwrap's ``info``/``block`` descriptors."""
    uid = run_as()
    inner = [BWRAP, "--unshare-user", "--uid", str(UID), "--gid", str(GID), "--disable-userns", "--cap-drop", "ALL",
             "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--hostname", "localhost", *([] if internet == "host" else ["--unshare-net"])]
    for name, flag in (("info", "--info-fd"), ("block", "--block-fd")):
        if fds and name in fds:
            inner += [flag, str(fds[name])]
    inner += ["--proc", "/proc", "--dev", "/dev"]
    stage = []  # (host source, name under STAGE) pairs
    for flag, source, dest in _binds(layout, internet=internet, hide=hide, expose=expose):
        if source is None:
            inner += (["--perms", "0755"] if flag == "--dir" else []) + [flag, str(dest)]
            continue
        if uid is not None and flag != "--symlink" and not _reachable(source):
            stage += [str(source), f"s{len(stage) // 2}"]
            source = STAGE / stage[-1]
        inner += [flag, str(source), str(dest)]
    inner += ["--remount-ro", "/", "--chdir", str(KAGGLE_ROOT / "working"), "--", *argv]
    if uid is None:
        return inner
    drop = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--pdeathsig", "SIGKILL", "--"]
    return [UNSHARE, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", STAGING, "stage",
            str(layout.etc.parent / ".stage"), *stage, "--", *drop, *inner]


def _binds(layout: Layout, *, internet: str, hide: Iterable[Path], expose: Iterable[Path]) -> list:
    """The sandbox's mounts in order: ``(bwrap flag, host source or None, sandbox path)``."""
    binds: list[tuple[str, Optional[Path], Path]] = []
    for name in SYSTEM:
        entry = Path("/") / name
        if entry.is_symlink():
            binds.append(("--symlink", Path(os.readlink(entry)), entry))
        elif entry.is_dir():
            binds.append(("--ro-bind", entry, entry))
    binds += [("--tmpfs", None, HOME), ("--tmpfs", None, Path("/tmp"))]
    binds += [("--ro-bind", folder, folder) for folder in _exposed(expose)]
    binds += [("--dev-bind", device, device) for device in sorted(Path("/dev").glob("nvidia*"))]  # GPUs
    for name in ["passwd", "group"] + (["resolv.conf"] if internet == "slirp" else []):
        binds.append(("--ro-bind", layout.etc / name, Path(os.path.realpath(Path("/etc") / name))))
    if Path("/sys/class/net").is_dir() and internet != "host":
        binds.append(("--tmpfs", None, Path("/sys/class/net")))  # the host's interfaces, listed by /sys
    binds += [("--dir", None, KAGGLE_ROOT),
              ("--ro-bind", layout.input, KAGGLE_ROOT / "input"),
              ("--bind", layout.working, KAGGLE_ROOT / "working"),
              ("--bind", layout.temp, KAGGLE_ROOT / "temp"),
              ("--bind", layout.internal, INTERNAL),
              ("--bind", layout.log, INTERNAL / "log.json")]
    return binds + _covers(binds, [*hide, *credential_paths()], layout.etc / "empty")


def visible(path: Path) -> bool:
    """Inside a system folder, so visible in the sandbox at its own path."""
    return len(path.parts) > 1 and path.parts[1] in SYSTEM and (Path("/") / path.parts[1]).is_dir() and \
        not (Path("/") / path.parts[1]).is_symlink()


def _reachable(source: Path) -> bool:
    """Reachable by the unprivileged user as it is (a system folder, a device): no staging needed."""
    return visible(source) or Path("/dev") in source.parents


def _exposed(expose: Iterable[Path]) -> list[Path]:
    """The folders to bind: each once, none already inside a system folder or another exposed one."""
    folders = sorted({Path(os.path.realpath(p)) for p in expose if Path(p).is_dir()})
    out = []
    for folder in folders:
        if folder == Path("/") or visible(folder) or any(f in folder.parents for f in out):
            continue
        out.append(folder)
    return out


def _covers(binds: list, hidden: Iterable[Path], empty: Path) -> list[tuple[str, Optional[Path], Path]]:
    """Mounts that cover each hidden path lying inside a bound folder (a file: ``empty``, a folder: empty)."""
    out = []
    for path in sorted({Path(os.path.realpath(h)) for h in hidden}):
        for flag, source, dest in binds:
            if source is None or flag == "--symlink" or not (source == path or source in path.parents):
                continue
            inside = dest / path.relative_to(source)
            if path.is_dir():
                out.append(("--tmpfs", None, inside))
            elif path.is_file():
                out.append(("--ro-bind", empty, inside))
    return out


def _connect(proc: subprocess.Popen, info_fd: int, log_path: Path) -> tuple[subprocess.Popen, int]:
    """Start slirp4netns on the sandbox's network namespace once bwrap reports its pid; wait until it is up.
    Returns it and the write end of its exit pipe (slirp4netns ends when that closes, so also with the server)."""
    info = _read_json(proc, info_fd)
    pid = info.get("child-pid")
    if not pid:
        raise SandboxError(f"bubblewrap reported no sandbox pid ({info})")
    _until(lambda: _loopback_up(pid), proc)  # bwrap sets up loopback first: configuring both at once fails
    keep = [os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)]
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    keep.append(exit_r)
    try:
        args = [SLIRP, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
                "--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", "--netns-type=path",
                f"/proc/self/fd/{keep[0]}", "tap0"]
        if run_as() is None:  # an unprivileged server joins the user namespace owning the sandbox's network
            keep.append(fcntl.ioctl(keep[0], NS_GET_USERNS))
            args[1:1] = [f"--userns-path=/proc/self/fd/{keep[-1]}"]
        with open(log_path, "ab") as log:
            slirp = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     pass_fds=(*keep, ready_w), start_new_session=True)
    except BaseException:
        os.close(ready_r)
        os.close(exit_w)
        raise
    finally:
        for fd in (*keep, ready_w):
            os.close(fd)
    try:
        if _read(ready_r, lambda: slirp.poll() is None, 1) != b"1":
            said = [line for line in log_path.read_text(errors="replace").splitlines()
                    if line.strip() and "seccomp is experimental" not in line]
            raise SandboxError("slirp4netns could not set up the kernel's network: " + ("; ".join(said[-3:])
                                                                                        or "no output"))
    except SandboxError:
        if slirp.poll() is None:
            slirp.kill()
        slirp.wait()
        os.close(exit_w)
        raise
    finally:
        os.close(ready_r)
    return slirp, exit_w


def _loopback_up(pid: int) -> bool:
    """bwrap has brought the sandbox's loopback up (its local route exists)."""
    try:
        return "127.0.0.1" in Path(f"/proc/{pid}/net/fib_trie").read_text()
    except OSError:
        return False


def _until(done, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while not done():
        if proc.poll() is not None:
            raise SandboxError(f"bubblewrap exited ({proc.returncode}) before the sandbox started")
        if time.monotonic() > deadline:
            raise SandboxError(f"the sandbox did not start within {SETUP_TIMEOUT_S:g} s")
        time.sleep(0.005)


def _read_json(proc: subprocess.Popen, fd: int) -> dict:
    data = b""
    while True:
        chunk = _read(fd, lambda: proc.poll() is None, 4096)
        if not chunk:
            raise SandboxError(f"bubblewrap exited ({proc.poll()}) before the sandbox started")
        data += chunk
        try:
            return json.loads(data[:data.rindex(b"}") + 1])
        except ValueError:
            continue


def _read(fd: int, alive, size: int) -> bytes:
    """Up to ``size`` bytes from ``fd``, waiting while ``alive()`` and at most :data:`SETUP_TIMEOUT_S`."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            return os.read(fd, size)
        if not alive():
            return b""
    raise SandboxError(f"the sandbox's network was not up within {SETUP_TIMEOUT_S:g} s")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()

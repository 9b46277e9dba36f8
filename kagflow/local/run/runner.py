"""Run a notebook the way a Kaggle batch session does, on this machine: the one runner of local kernels.

:func:`run_notebook_in_sandbox` executes a notebook with ``<sandbox>/input`` as its read-only inputs,
``<sandbox>/working`` as its cwd and output, a time limit, cancellation, Kaggle's resource limits
(:mod:`kagflow.local.run.limits`) and, with ``enable_internet=False``, no way out to the network. The local
server's kernel runs (:mod:`kagflow.local.server.jobs`) and ``kagflow kernel run --local``
(:mod:`kagflow.workflow.kernel_run`) both use it.

Where bubblewrap works (:mod:`kagflow.local.run.sandbox`), the run happens in a Kaggle-shaped, unprivileged
sandbox: the notebook sees ``/kaggle/input``, ``/kaggle/working``, ``/kaggle/temp``, the system folders
read-only and nothing of the host's homes, data or secrets; with internet off, a network namespace with
loopback only; with internet on, one of its own through slirp4netns (the host's loopback, so the local
server, unreachable). Elsewhere it runs unconfined in the sandbox folders (one line on stderr and in the
log says so), with a socket guard for internet off; ``require_sandbox`` (a key-checking server) refuses
instead: the run ends ERROR saying why and how to fix it.

The environment is an allow-list (:func:`sandbox_env`): the kernel's own Kaggle variables, ``PATH``, a private
``HOME``, locale, GPU and thread settings; never the server's (no keys, no tokens, no users file).

``kagflow/local/run/executor.py`` (this interpreter's nbclient) starts a ``python3`` kernel on ``python``
(default: this interpreter; kagflow passes the local image's, see :mod:`kagflow.localimage`).
``pip install`` in the kernel goes to the run's own ``site`` folder (``PIP_TARGET``, first on the
kernel's ``PYTHONPATH``): a run never modifies the image or any other environment.

Sandbox layout::

    <sandbox>/input/      inputs (see kagflow.local.run.mounts)
    <sandbox>/working/    cwd; its files are the run's output
    <sandbox>/temp/       /kaggle/temp
    <sandbox>/log.json    Kaggle-format log: [{"stream_name", "time", "data"}, ...]
    <sandbox>/.kagflow/   internals: notebook, executed.ipynb, result, kernelspec, site/ (the kernel's:
                          read back with kernel_file, which follows no link it may have put there)
    <sandbox>/etc/        the sandbox's passwd, group and resolv.conf
    <sandbox>/executor.log  what the executor and the sandbox printed
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

from kagflow.local.run import sandbox as bwrap
from kagflow.local.run.limits import Limits, working_exceeded

COMPLETE, ERROR, CANCELLED = "COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"
NO_INTERNET_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens, connections fail at once
KILL_GRACE_S = 3.0
WATCH_S = 2.0  # how often the disk of /kaggle/working is measured
EXECUTOR = Path(__file__).with_name("executor.py")  # copied into the run: imports nothing from kagflow
# One OpenMP thread unless the caller says otherwise: on a small CPU box, the kernel's threads
# contend with the server and the client, and a training step gets many times slower.
KERNEL_THREADS = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
# What of the server's environment a kernel sees: locale, time zone, GPU and thread settings; never a name
# that looks like a secret, whatever its prefix.
PASSED_ENV = re.compile(r"LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|LD_LIBRARY_PATH|CUDA_\w+|NVIDIA_\w+|"
                        r"OMP_NUM_THREADS|MKL_NUM_THREADS|OPENBLAS_NUM_THREADS|TOKENIZERS_PARALLELISM")
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
FIX = "install them (make setup does, as root: apt-get install bubblewrap slirp4netns)"

SITECUSTOMIZE = '''\
"""kagflow local kernel: internet is off (enable_internet: false). Loopback still works."""
import errno as _errno
import ipaddress as _ipaddress
import socket as _socket

_MESSAGE = "Internet is disabled for this kernel (enable_internet: false)"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%")[0].strip("[]").lower()
    if host in _LOCAL_NAMES or host == "":
        return True
    try:
        return _ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard(address):
    if isinstance(address, tuple) and not _is_local(address[0]):
        raise OSError(_errno.ENETUNREACH, _MESSAGE)


_connect, _connect_ex = _socket.socket.connect, _socket.socket.connect_ex
_getaddrinfo = _socket.getaddrinfo


def _guarded_connect(self, address):
    _guard(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _guard(address)
    return _connect_ex(self, address)


def _is_literal(host):
    try:
        _ipaddress.ip_address(str(host).split("%")[0].strip("[]"))
        return True
    except ValueError:
        return False


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host) and not _is_literal(host):  # literals need no DNS; connect() refuses them
        raise _socket.gaierror(_socket.EAI_NONAME, _MESSAGE)
    return _getaddrinfo(host, *args, **kwargs)


_socket.socket.connect = _guarded_connect
_socket.socket.connect_ex = _guarded_connect_ex
_socket.getaddrinfo = _guarded_getaddrinfo
'''


@dataclass(frozen=True)
class Places:
    """The run's folders as the kernel sees them: /kaggle/... in the sandbox, else the host's."""

    input: Path
    working: Path
    temp: Path
    internal: Path

    @classmethod
    def of(cls, sandbox: Path, sandboxed: bool) -> "Places":
        if sandboxed:
            return cls(bwrap.KAGGLE_ROOT / "input", bwrap.KAGGLE_ROOT / "working", bwrap.KAGGLE_ROOT / "temp",
                       bwrap.INTERNAL)
        return cls(sandbox / "input", sandbox / "working", sandbox / "temp", sandbox / ".kagflow")


def sandbox_env(sandbox: Path, *, enable_internet: bool, env: Optional[Mapping[str, str]] = None,
                python: Optional[str] = None, sandboxed: bool = False) -> dict:
    """The environment a run sees: an allow-list, never the server's environment (see :data:`PASSED_ENV`). Also
    writes the run's ``python3`` kernelspec and, unconfined without internet, the socket guard."""
    sandbox = Path(sandbox).resolve()
    places = Places.of(sandbox, sandboxed)
    result = {k: v for k, v in os.environ.items() if PASSED_ENV.fullmatch(k) and not SECRET_NAME.search(k)}
    result.setdefault("LANG", "C.UTF-8")
    home = bwrap.HOME if sandboxed else sandbox / "home"  # a private, empty home, as Kaggle's /root
    if not sandboxed:
        home.mkdir(parents=True, exist_ok=True)
    host_path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and (not sandboxed or
                                                                                   bwrap.visible(Path(p)))]
    path = [str(Path(python or sys.executable).parent), *host_path, *SYSTEM_PATH]
    kernel_path = [str(places.internal / "site")]
    (sandbox / ".kagflow" / "site").mkdir(parents=True, exist_ok=True)
    if not enable_internet and not sandboxed:
        guard = sandbox / ".kagflow" / "guard"
        guard.mkdir(parents=True, exist_ok=True)
        (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
        kernel_path.append(str(places.internal / "guard"))
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            result[var] = NO_INTERNET_PROXY
        result["no_proxy"] = result["NO_PROXY"] = "127.0.0.1,localhost,::1"
    _kernelspec(sandbox / ".kagflow" / "jupyter", python or sys.executable,
                {"PYTHONPATH": os.pathsep.join(kernel_path), "PIP_TARGET": str(places.internal / "site")})
    result.update({
        "PATH": os.pathsep.join(dict.fromkeys(path)),
        "HOME": str(home),
        "JUPYTER_PATH": str(places.internal / "jupyter"),
        "KAGFLOW_INPUT_ROOT": str(places.input),
        "KAGFLOW_WORKING_ROOT": str(places.working),
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "KAGFLOW_INTERNET": "1" if enable_internet else "0",
        "PYTHONUNBUFFERED": "1",
    })
    if sandboxed:
        result["TMPDIR"] = "/tmp"
    result.update({k: v for k, v in KERNEL_THREADS.items() if k not in result})
    result.update(env or {})
    return result


def _kernelspec(jupyter_dir: Path, python: str, env: Mapping[str, str]) -> Path:
    """A ``python3`` kernelspec for ``python`` with the kernel's own ``env``, found first through
    ``JUPYTER_PATH`` (a user-wide ``python3`` kernelspec could otherwise pick another Python)."""
    spec = jupyter_dir / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "env": dict(env),
        "display_name": "Python 3 (kagflow local)", "language": "python", "metadata": {"debugger": False}}))
    return jupyter_dir


def run_notebook_in_sandbox(notebook_path: os.PathLike | str, sandbox_dir: os.PathLike | str, *,
                            timeout: float, enable_internet: bool, env: Optional[Mapping[str, str]] = None,
                            cancel: Optional[threading.Event] = None, python: Optional[str] = None,
                            hide: Iterable[os.PathLike | str] = (), limits: Limits = Limits(),
                            require_sandbox: bool = False) -> tuple[str, str, Path]:
    """Execute a notebook in ``sandbox_dir``; return ``(status, failure_message, log_path)``.

    ``status`` is ``"COMPLETE"``, ``"ERROR"`` (``failure_message`` is the exception's ``Name: value``, the time
    limit, the limit the run exceeded, or why it was refused) or ``"CANCEL_ACKNOWLEDGED"`` after ``cancel`` is set.
    ``sandbox_dir/input`` should already hold the inputs; the other folders are created.
    ``python``: the kernel's interpreter (with ipykernel); ``hide``: host paths the run must not see;
    ``require_sandbox``: refuse to run unconfined, or with internet on but without a network of its own.
    """
    sandbox = Path(sandbox_dir).resolve()
    layout = bwrap.Layout.of(sandbox)
    for folder in (layout.input, layout.working, layout.temp, layout.internal):
        folder.mkdir(parents=True, exist_ok=True)
    result_path = layout.internal / "result.json"
    result_path.unlink(missing_ok=True)
    layout.log.write_text("[]")
    if Path(notebook_path).resolve() != layout.internal / "notebook.ipynb":
        shutil.copyfile(notebook_path, layout.internal / "notebook.ipynb")
    shutil.copyfile(EXECUTOR, layout.internal / "executor.py")
    internet, notes, refusal = _confinement(enable_internet, require_sandbox, sandbox)
    if refusal:
        _append_log(layout.log, "stderr", refusal + "\n")
        return ERROR, refusal, layout.log
    sandboxed = bwrap.unavailable_reason() is None
    timeout, capped = limits.session(timeout)
    enforced = limits.enforce()
    for line in [enforced.describe(timeout), capped, *notes]:
        if line:
            _append_log(layout.log, "stderr", line)
    for note in notes:
        print(note.strip(), file=sys.stderr)
    run_env = sandbox_env(sandbox, enable_internet=enable_internet, env=env, python=python, sandboxed=sandboxed)
    places = Places.of(sandbox, sandboxed)
    cmd = [sys.executable, str(places.internal / "executor.py"), str(places.internal / "notebook.ipynb"),
           str(places.working), str(places.internal / "log.json") if sandboxed else str(layout.log),
           str(places.internal / "result.json"), str(places.internal / "executed.ipynb")]
    running = None
    try:
        with open(sandbox / "executor.log", "wb") as executor_log:  # outside the kernel's folders
            if sandboxed:
                _prepare(layout)
                running = bwrap.launch(cmd, layout, internet=internet, env=run_env, prefix=enforced.prefix(),
                                       hide=[Path(h) for h in hide], expose=_code_folders(python, env),
                                       stdout=executor_log)
                proc = running.proc
            else:
                proc = subprocess.Popen([*enforced.prefix(), *cmd], cwd=layout.working, env=run_env,
                                        stdin=subprocess.DEVNULL, stdout=executor_log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            ended = _wait(proc, timeout, cancel, lambda: working_exceeded(layout.working, limits.working_bytes))
        if ended == "cancel":
            _append_log(layout.log, "stderr", "Kernel run cancelled.\n")
            return CANCELLED, "Cancelled", layout.log
        if ended == "timeout":
            message = f"Timeout: the run exceeded its time limit of {timeout:g} seconds"
        elif ended:
            message = ended  # a limit the watcher enforces
        else:
            try:
                result = json.loads(kernel_file(result_path, 1 << 20))
                if result.get("status") == COMPLETE:
                    return COMPLETE, "", layout.log
                return ERROR, enforced.reason(str(result.get("failure") or "ERROR")), layout.log
            except (OSError, ValueError, AttributeError):
                tail = (sandbox / "executor.log").read_text(errors="replace")[-2000:]
                message = enforced.reason(f"Kernel process exited with code {proc.returncode} before finishing")
                _append_log(layout.log, "stderr", message + "\n" + tail)
                return ERROR, message, layout.log
    except bwrap.SandboxError as exc:
        message = f"The kernel's sandbox could not start: {exc}"
    finally:
        if running is not None:
            running.end()
        enforced.close()
    _append_log(layout.log, "stderr", message + "\n")
    return ERROR, message, layout.log


def _confinement(enable_internet: bool, require_sandbox: bool, sandbox: Path) -> tuple[str, list[str], str]:
    """``(internet mode, warnings for the log, refusal)`` for a run here: an unconfined run, or internet on
    without a network of its own, is refused when ``require_sandbox``, else warned about."""
    reason = bwrap.unavailable_reason()
    if reason is not None:
        if require_sandbox:
            return "", [], (f"Kernel refused: this local Kaggle checks keys (several users), so it runs kernels only "
                            f"in a sandbox, and there is none here: {reason}. Fix: {FIX}, then restart the server")
        return "host", [f"kagflow: no sandbox for this kernel run ({reason}); it runs unconfined in {sandbox}\n"], ""
    if not enable_internet:
        return "off", [], ""
    network = bwrap.network_unavailable_reason()
    if network is None:
        return "slirp", [], ""
    if require_sandbox:
        return "", [], (f"Kernel refused: internet-on kernels need a network of their own on this key-checking local "
                        f"Kaggle (the host's would reach the server), and {network}. Fix: {FIX}, or push with "
                        "enable_internet: false")
    return "host", [f"kagflow: this kernel shares the host's network, local server included ({network})\n"], ""


def _prepare(layout: bwrap.Layout) -> None:
    """Give the sandbox's unprivileged user its writable folders and read access to its inputs."""
    layout.write_etc()
    uid = bwrap.run_as()
    if uid is None:
        return
    for top in layout.writable():
        os.chown(top, uid, uid)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(layout.input):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink() and not path.stat().st_mode & 0o004:  # a blob only its owner may read
                copy = path.with_name(name + ".kagflow-copy")
                shutil.copyfile(path, copy)
                os.chmod(copy, 0o644)  # as mounts.place's copies (read-only inside all the same)
                os.replace(copy, path)


def kernel_file(path: Path, limit: int = -1) -> bytes:
    """The content of a file the kernel wrote, read without following what it may have put there instead (a
    symlink to a host file, a FIFO): a regular file only, at most ``limit`` bytes (-1: all)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit)
    finally:
        os.close(fd)


def _code_folders(python: Optional[str], env: Optional[Mapping[str, str]]) -> list[Path]:
    """What the executor and the kernel run from: both interpreters' environments, kagflow's own package (its
    source only, not the project around it) and the caller's PYTHONPATH folders (read-only inside; nothing else
    of the host's homes)."""
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[2]}
    for exe in filter(None, (python,)):
        folders |= {Path(exe).parent.parent, Path(os.path.realpath(exe)).parent.parent}
    pythonpath = (env or {}).get("PYTHONPATH", "")
    folders |= {Path(p) for p in pythonpath.split(os.pathsep) if p}
    return sorted(folders)


def _wait(proc: subprocess.Popen, timeout: float, cancel: Optional[threading.Event],
          exceeded: Callable[[], str]) -> str:
    """``""`` when ``proc`` exits; ``"cancel"``, ``"timeout"`` or what ``exceeded()`` says (checked every
    :data:`WATCH_S`) after stopping it."""
    deadline = time.monotonic() + timeout
    next_watch = time.monotonic() + WATCH_S
    while True:
        try:
            proc.wait(timeout=0.1)
            return ""
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            _stop(proc)
            return "cancel"
        if time.monotonic() > deadline:
            _stop(proc)
            return "timeout"
        if time.monotonic() > next_watch:
            next_watch = time.monotonic() + WATCH_S
            message = exceeded()
            if message:
                _stop(proc)
                return message


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the executor's group (it shuts its kernel down), then SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
        try:  # leader gone; kill stragglers (the kernel) in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _append_log(log_path: Path, stream: str, data: str) -> None:
    """Add one entry to a Kaggle-format log, creating or repairing it as needed."""
    entries = read_log(log_path)
    entries.append({"stream_name": stream, "time": entries[-1]["time"] if entries else 0.0, "data": data})
    tmp = log_path.with_suffix(".tmp")
    tmp.write_text("[" + "\n,".join(json.dumps(e) for e in entries) + "]")
    os.replace(tmp, log_path)


def read_log(log_path: Path) -> list:
    """Entries of a Kaggle-format log (empty if missing or unreadable)."""
    try:
        data = json.loads(Path(log_path).read_text())
        return data if isinstance(data, list) else []
    except (OSError, ValueError):
        return []

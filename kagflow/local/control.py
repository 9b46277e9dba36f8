"""Run the local Kaggle as a background process and find it again.

``ensure_background_server(data_dir)`` starts ``python -m kagflow.local serve`` detached (unless
one already answers for that data dir) and returns its URL; ``stop_background_server`` ends
it, and it ends by itself once idle for ``$KAGFLOW_LOCAL_IDLE_S`` seconds (default :data:`IDLE_S`; 0: never):
no request and no kernel queued or running (see :mod:`kagflow.local.server.idle`). The process leaves
``server.pid``, ``server.port`` and ``server.log`` in the data dir, and removes the first two as it ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

from kagflow.errors import KagflowError
from kagflow.local.env import CONSISTENCY_ENV, DATA_DIR_ENV, IDLE_ENV, USERS_ENV

PID_FILE, PORT_FILE, LOG_FILE = "server.pid", "server.port", "server.log"
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
IDLE_S = 1800.0  # a background server stops by itself after this long idle (unless $KAGFLOW_LOCAL_IDLE_S says)


def default_data_dir() -> Path:
    """``$KAGFLOW_LOCAL_DATA_DIR``, else ``~/.kagflow/local``."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".kagflow" / "local")


def find_free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def health(url: str, timeout: float = 2.0) -> Optional[dict]:
    """The server's ``/health`` answer, or None if nothing kagflow-local answers at ``url``."""
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{url.rstrip('/')}/health", timeout=timeout) as resp:
            data = json.loads(resp.read().decode())
        return data if data.get("service") == "kagflow-local" else None
    except (OSError, ValueError):
        return None


def load_users(path: os.PathLike | str) -> dict[str, str]:
    """The ``--users`` file: a JSON object ``{"username": "key", ...}`` (or one kaggle.json,
    ``{"username", "key"}``)."""
    from kagflow.local.server.names import check_ident
    from kagflow.local.server.protocol import ApiError

    path = Path(path)
    fix = (f'write {path} as {{"alice": "her-key", "bob": "his-key"}} (or copy a kaggle.json there), '
           f"then run: kagflow local serve --users {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KagflowError(f"cannot read the users file {path}: {exc.strerror}", hint=fix) from None
    except ValueError as exc:
        raise KagflowError(f"the users file {path} is not valid JSON: {exc}", hint=fix) from None
    if isinstance(data, dict) and set(data) == {"username", "key"}:
        data = {data["username"]: data["key"]}
    if not isinstance(data, dict) or not data:
        raise KagflowError(f"the users file {path} must be a non-empty JSON object of username: key", hint=fix)
    for name, key in data.items():
        try:
            check_ident(name, what="username")
        except ApiError as exc:
            raise KagflowError(f"the users file {path}: {exc.message}", hint=fix) from None
        if not isinstance(key, str) or not key:
            raise KagflowError(f"the users file {path}: the key of {name!r} must be a non-empty string", hint=fix)
    return dict(data)


def users_from_env() -> Optional[dict[str, str]]:
    """Keys to check, from the file ``$KAGFLOW_LOCAL_USERS`` names; None (any key accepted) when unset."""
    path = os.environ.get(USERS_ENV)
    return load_users(path) if path else None


def consistency_from_env() -> str:
    """The consistency mode ``$KAGFLOW_LOCAL_CONSISTENCY`` names (default: instant)."""
    from kagflow.local.server.consistency import DEFAULT_MODE

    return os.environ.get(CONSISTENCY_ENV) or DEFAULT_MODE


def idle_seconds(value, where: str) -> Optional[float]:
    """``value`` (seconds, from ``where``) as an idle stop: None (never) for 0; refused unless a number >= 0."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise KagflowError(f"{where} must be a number of seconds (0: never stop when idle), not {value!r}",
                           context=where, hint=f"e.g. {IDLE_S:g} (a background server's default), or 0")
    return seconds or None


def idle_from_env() -> Optional[float]:
    """How long a background server waits idle before it stops: ``$KAGFLOW_LOCAL_IDLE_S``, else :data:`IDLE_S`;
    None: never."""
    value = os.environ.get(IDLE_ENV)
    return idle_seconds(value, f"${IDLE_ENV}") if value else IDLE_S


def serve_forever(data_dir: os.PathLike | str, port: int = 0, *, host: str = HOST,
                  users: Optional[dict[str, str]] = None, users_file: Optional[os.PathLike | str] = None,
                  consistency: Optional[str] = None, idle_s: Optional[float] = None) -> None:
    """Serve ``data_dir`` in this process until SIGTERM/SIGINT, or until idle (no request, no kernel queued or
    running) for ``idle_s`` seconds (None or 0: never); writes the pid and port files, removes them as it ends.

    ``users`` (username → key): only those keys are accepted (401 otherwise), and kernels run only in the
    sandbox; None accepts any key. ``users_file``: where they were read from (never visible to a kernel).
    ``consistency``: ``instant`` or ``eventual`` (Kaggle's delays after a create; default
    ``$KAGFLOW_LOCAL_CONSISTENCY``, else instant; see :mod:`kagflow.local.server.consistency`).
    """
    from kagflow.local.server.api import Settings
    from kagflow.local.server.consistency import MODES, with_mode
    from kagflow.local.server.httpd import LocalServer

    idle_s = idle_seconds(idle_s or 0, "--idle-s")
    mode = consistency or consistency_from_env()
    try:
        settings = with_mode(Settings(), mode)
    except ValueError:
        raise KagflowError(f"unknown consistency mode {mode!r}", context=f"--consistency or ${CONSISTENCY_ENV}",
                           hint=f"use one of {', '.join(MODES)}") from None
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    server = LocalServer(data, host, port, users=users, hide=[Path(users_file)] if users_file else [],
                         settings=settings)
    stopping = []

    def _stop(*_):
        if not stopping:
            stopping.append(True)
            threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    (data / PORT_FILE).write_text(str(server.port))
    (data / PID_FILE).write_text(str(os.getpid()))
    auth = f"keys checked for {len(users)} user(s)" if users else "any key accepted"
    print(f"kagflow local Kaggle serving {data} at {server.url} ({auth}; consistency {mode})", flush=True)
    print(sandbox_line(users is not None), flush=True)
    if idle_s:
        def _idle() -> None:
            print(f"kagflow local Kaggle stopping by itself: idle for {idle_s:g} s (no request, no kernel queued or "
                  f"running; ${IDLE_ENV} sets how long for a background server, 0: never)", flush=True)
            _stop()

        print(f"it stops by itself once idle for {idle_s:g} s", flush=True)
        server.idle.watch(idle_s, _idle)
    try:
        server.serve_forever()
    finally:
        for name, mine in ((PID_FILE, os.getpid()), (PORT_FILE, server.port)):
            try:  # only this server's: a fresh one may already have written its own
                if (data / name).read_text().strip() == str(mine):
                    (data / name).unlink()
            except OSError:
                pass


def sandbox_line(require_sandbox: bool) -> str:
    """How this server's kernels will run, said once at start (loudly when not in a sandbox)."""
    from kagflow.local.run.sandbox import network_unavailable_reason, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        then = "refused (they end ERROR)" if require_sandbox else "run UNCONFINED, with this server's rights"
        return f"WARNING: no kernel sandbox here ({reason}): kernels will be {then}"
    network = network_unavailable_reason()
    if network is None:
        return "kernels run in an unprivileged bubblewrap sandbox; internet-on ones through slirp4netns"
    then = "refused" if require_sandbox else "share this machine's network, this server included"
    return f"WARNING: internet-on kernels will be {then} ({network})"


def running_url(data_dir: os.PathLike | str) -> Optional[str]:
    """URL of the background server of ``data_dir`` if it is alive and serves that dir."""
    data = Path(data_dir).resolve()
    try:
        port = int((data / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    url = f"http://{HOST}:{port}"
    info = health(url)
    if info and Path(info.get("data_dir", "")) == data:
        return url
    return None


def ensure_background_server(data_dir: os.PathLike | str, port: int = 0, *, idle_s: Optional[float] = None) -> str:
    """URL of a live background server for ``data_dir``, starting one detached if needed; a new one stops by
    itself once idle for ``idle_s`` seconds (default :func:`idle_from_env`; 0: never)."""
    data = Path(data_dir).resolve()
    url = running_url(data)
    if url:
        return url
    data.mkdir(parents=True, exist_ok=True)
    for stale in (PID_FILE, PORT_FILE):
        (data / stale).unlink(missing_ok=True)
    chosen = port or find_free_port()
    idle = idle_from_env() if idle_s is None else idle_seconds(idle_s, "idle_s")
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with open(data / LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kagflow.local", "serve", "--port", str(chosen),
                                 "--data-dir", str(data), "--idle-s", f"{idle or 0:g}"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=str(data))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        url = running_url(data)
        if url:
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = (data / LOG_FILE).read_text(errors="replace")[-1500:]
    raise KagflowError("the local Kaggle server did not start", context=tail or None,
                       hint=f"run it in the foreground to see why: kagflow local serve --data-dir {data}")


def stop_background_server(data_dir: os.PathLike | str, timeout: float = 15.0) -> bool:
    """Stop the background server of ``data_dir``; False if none was running."""
    data = Path(data_dir).resolve()
    try:
        pid = int((data / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return False
    if running_url(data) is None:
        (data / PID_FILE).unlink(missing_ok=True)
        (data / PORT_FILE).unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our child, as when this process started it)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True

"""Run the local Kaggle as a background process and find it again.

``ensure_background_server(data_dir)`` starts ``python -m kagflow.local serve`` detached (unless
one already answers for that data dir) and returns its URL; ``stop_background_server`` ends
it. The process leaves ``server.pid``, ``server.port`` and ``server.log`` in the data dir.
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
from kagflow.local.env import CONSISTENCY_ENV, DATA_DIR_ENV, USERS_ENV

PID_FILE, PORT_FILE, LOG_FILE = "server.pid", "server.port", "server.log"
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


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


def serve_forever(data_dir: os.PathLike | str, port: int = 0, *, host: str = HOST,
                  users: Optional[dict[str, str]] = None, users_file: Optional[os.PathLike | str] = None,
                  consistency: Optional[str] = None) -> None:
    """Serve ``data_dir`` in this process until SIGTERM/SIGINT; writes the pid and port files.

    ``users`` (username → key): only those keys are accepted (401 otherwise), and kernels run only in the
    sandbox; None accepts any key. ``users_file``: where they were read from (never visible to a kernel).
    ``consistency``: ``instant`` or ``eventual`` (Kaggle's delays after a create; default
    ``$KAGFLOW_LOCAL_CONSISTENCY``, else instant; see :mod:`kagflow.local.server.consistency`).
    """
    from kagflow.local.server.api import Settings
    from kagflow.local.server.consistency import MODES, with_mode
    from kagflow.local.server.httpd import LocalServer

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
    try:
        server.serve_forever()
    finally:
        for name in (PID_FILE, PORT_FILE):
            try:
                if name != PID_FILE or (data / name).read_text().strip() == str(os.getpid()):
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


def ensure_background_server(data_dir: os.PathLike | str, port: int = 0) -> str:
    """URL of a live background server for ``data_dir``, starting one detached if needed."""
    data = Path(data_dir).resolve()
    url = running_url(data)
    if url:
        return url
    data.mkdir(parents=True, exist_ok=True)
    for stale in (PID_FILE, PORT_FILE):
        (data / stale).unlink(missing_ok=True)
    chosen = port or find_free_port()
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with open(data / LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kagflow.local", "serve", "--port", str(chosen),
                                 "--data-dir", str(data)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=str(data))
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

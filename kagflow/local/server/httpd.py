"""The local Kaggle HTTP server: the official client's wire protocol on loopback.

Routes::

    POST /api/v1/{Service}/{Method}   JSON in, JSON out (kagglesdk types); download calls answer 302
    PUT  /upload/{token}              resumable blob upload (see kagflow.local.server.transfer)
    GET  /files/{signed}/{name}       signed, ranged file download
    GET  /api/v1/kernels/logs/stream/{owner}/{slug}   live log (SSE) or the finished log (JSON)
    GET  /health                      {"ok": true, "service": "kagflow-local", "pid": ...}
    GET  any other path               the web pages, HTML (kagflow.local.server.web); POST /web/...: their sign-in

Every error is ``{"code": <status>, "message": ...}`` with ``Content-Type: application/json``.
Auth: HTTP Basic ``username:key`` (any key unless ``users`` is given) or ``Bearer <token>``
(``tokens`` maps token → username). The key is never logged.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import re
import sqlite3
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterable, Optional

from kagglesdk.kaggle_object import KaggleObject

from kagflow.local.run.runner import read_log

# Importing the route modules registers their handlers.
from kagflow.local.server import (  # noqa: F401
    api_blobs,
    api_competitions,
    api_datasets,
    api_diagnostics,
    api_kernels,
    api_models,
    transfer,
    web,
)
from kagflow.local.server import jobs as jobs_module
from kagflow.local.server.api import HANDLERS, Ctx, Redirect, Settings
from kagflow.local.server.consistency import RateLimit
from kagflow.local.server.faults import DROP, ERROR, SLOW, TOO_MANY, Faults
from kagflow.local.server.idle import STOPPING, Idle
from kagflow.local.server.jobs import Jobs
from kagflow.local.server.names import check_ident, check_request_names, parse_count
from kagflow.local.server.protocol import ApiError, parse_request, routes, to_wire
from kagflow.local.server.store import Store
from kagflow.local.server.web_login import Logins

log = logging.getLogger("kagflow.local")
SERVICE_NAME = "kagflow-local"
_API_RE = re.compile(r"/api/v1/([A-Za-z0-9_.]+)/([A-Za-z0-9_]+)/?")
_LOGS_RE = re.compile(r"/api/v1/kernels/logs/stream/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/?")
FINISHED = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")


class LocalServer:
    """A running local Kaggle (HTTP in a background thread + the job worker). Use as a context manager."""

    def __init__(self, data_dir: os.PathLike | str, host: str = "127.0.0.1", port: int = 0, *,
                 faults: Optional[Faults] = None, settings: Optional[Settings] = None,
                 users: Optional[Dict[str, str]] = None, tokens: Optional[Dict[str, str]] = None,
                 allow_non_loopback: bool = False, read_timeout_s: float = 30.0, hide: Iterable[Path] = ()):
        if not allow_non_loopback and not _is_loopback(host):
            raise ValueError(f"refusing to bind {host!r}: the local Kaggle listens on loopback only "
                             "(pass allow_non_loopback=True to override)")
        self.data_dir = Path(data_dir).resolve()
        self.settings = settings or Settings()
        self.faults = faults
        self.rate_limit = RateLimit(self.settings.rate_limit_every, self.settings.rate_limit_retry_after_s)
        self.users = users
        self.tokens = dict(tokens or {})
        self.logins = Logins()  # the web pages' one-time links and sessions
        self.store = Store(self.data_dir)
        # with keys checked (several users), kernels run only in the sandbox, never seeing ``hide`` (the users file)
        self.jobs = Jobs(self.store, self.settings, require_sandbox=users is not None, hide=hide)
        self.idle = Idle(self.jobs.busy)  # what a background server's idle stop reads (control.serve_forever)
        handler = type("BoundHandler", (Handler,), {"app": self, "timeout": read_timeout_s})
        self.httpd = _Server((host, port), handler)
        self.host, self.port = self.httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread: Optional[threading.Thread] = None
        self._serving = self._closed = False

    def start(self) -> "LocalServer":
        self.jobs.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"kagflow-local-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (from a signal handler or another thread)."""
        self._serving = True
        self.jobs.start()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, end the job worker (a run in progress ends in ERROR) and close the store. Idempotent."""
        if self._thread is None:  # serve_forever() mode closes itself; never started: just close
            if not self._serving:
                self._close()
            else:
                self.httpd.shutdown()
            return
        self.httpd.shutdown()
        self._thread.join(10)
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.httpd.server_close()
        self.jobs.stop()
        self.store.close()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def cancel_kernel(self, owner: str, slug: str, version: Optional[int] = None) -> bool:
        """Cancel a queued or running kernel version (latest if ``version`` is None)."""
        sql = ("SELECT v.id FROM kernel_versions v JOIN kernels k ON k.id = v.kernel_id WHERE k.owner=? AND "
               "k.slug=?" + (" AND v.number=?" if version else "") + " ORDER BY v.number DESC LIMIT 1")
        row = self.store.one(sql, owner, slug, *([version] if version else []))
        return bool(row) and self.jobs.cancel(row["id"])


def start_server(data_dir: os.PathLike | str, port: int = 0, *, faults: Optional[Faults] = None,
                 settings: Optional[Settings] = None, users: Optional[Dict[str, str]] = None,
                 tokens: Optional[Dict[str, str]] = None, host: str = "127.0.0.1",
                 allow_non_loopback: bool = False, read_timeout_s: float = 30.0,
                 hide: Iterable[Path] = ()) -> LocalServer:
    """Start a local Kaggle on ``host:port`` (0: a free port) in a background thread."""
    return LocalServer(data_dir, host, port, faults=faults, settings=settings, users=users, tokens=tokens,
                       allow_non_loopback=allow_non_loopback, read_timeout_s=read_timeout_s, hide=hide).start()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class Handler(BaseHTTPRequestHandler):
    """One request; every path ends in exactly one answer (or a deliberate dropped connection)."""

    protocol_version = "HTTP/1.1"
    server_version = "kagflow-local"
    app: LocalServer

    def log_message(self, fmt, *args):  # request lines only; headers (credentials) never
        log.debug("%s " + fmt, self.address_string(), *args)

    # ------------------------------------------------------------------ answers

    def _send_json(self, status: int, body: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error_json(self, err: ApiError) -> None:
        self._send_json(err.code, {"code": err.code, "message": err.message}, err.headers)

    def _guarded(self, fn) -> None:
        if not self.app.idle.begin():
            self.close_connection = True
            try:
                self._send_error_json(ApiError(503, STOPPING))
            except OSError:
                pass
            return
        try:
            self._answer(fn)
        finally:
            self.app.idle.end()

    def _answer(self, fn) -> None:
        try:
            fn()
        except ApiError as err:
            if self.command == "PUT":  # its body may be unread: never reuse the connection
                self.close_connection = True
            self._send_error_json(err)
        except transfer.ClientGone as gone:
            log.info("connection dropped: %s", gone)
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except RecursionError:
            self._send_error_json(ApiError(400, "Invalid JSON payload: nested too deeply"))
        except sqlite3.IntegrityError:
            self._send_error_json(ApiError(409, "Conflict: that name is already taken"))
        except Exception as exc:  # never a stack trace or a hang for the client
            log.exception("internal error on %s %s", self.command, self.path)
            self.close_connection = True
            try:
                self._send_error_json(ApiError(500, f"Internal error in the local Kaggle ({type(exc).__name__})"))
            except OSError:
                pass

    def _fault(self, route: str) -> Optional[str]:
        faults = self.app.faults
        if faults is None:
            return None
        action, rule = faults.decide(route)
        if action == TOO_MANY:
            self.close_connection = True
            raise ApiError(429, "Too many requests (injected by kagflow local faults)",
                           headers={"Retry-After": str(rule.retry_after)})
        if action == ERROR:
            self.close_connection = True
            raise ApiError(500, "Internal server error (injected by kagflow local faults)")
        if action == SLOW:
            time.sleep(rule.slow_seconds)
        if action == DROP:
            return DROP
        return None

    # ------------------------------------------------------------------ auth

    def _user(self) -> Optional[str]:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            return None
        if scheme.lower() == "basic":
            try:
                username, sep, key = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ApiError(401, "Malformed Basic credentials") from None
            if not sep or not username:
                raise ApiError(401, "Basic credentials must be username:key")
            check_ident(username, what="username", code=401)
            users = self.app.users
            if users is not None and users.get(username) != key:
                raise ApiError(401, f"Invalid API key for {username!r}")
            return username
        if scheme.lower() == "bearer":
            username = self.app.tokens.get(value.strip())
            if not username:
                raise ApiError(401, "Invalid or expired access token")
            return check_ident(username, what="username", code=401)
        raise ApiError(401, f"Unsupported Authorization scheme {scheme!r}")

    # ------------------------------------------------------------------ methods

    def do_POST(self):
        self._guarded(self._api)

    def do_PUT(self):
        self._guarded(self._upload)

    def do_GET(self):
        self._guarded(self._get)

    def do_HEAD(self):
        self._guarded(self._get)

    def do_DELETE(self):
        self._guarded(self._not_allowed)

    do_PATCH = do_DELETE

    def _not_allowed(self):
        self.close_connection = True
        raise ApiError(405, f"{self.command} is not supported here")

    def _api(self) -> None:
        if self.path.startswith("/web/"):
            web.serve_post(self, self.path.split("?", 1)[0])
            return
        m = _API_RE.fullmatch(self.path.split("?", 1)[0])
        if not m:
            self.close_connection = True
            raise ApiError(404, f"No such endpoint: {self.path[:200]!r}")
        route = f"{m.group(1)}/{m.group(2)}"
        if self._fault(route) == DROP:
            self.close_connection = True
            return
        data = self._json_body()
        types = routes().get(route)
        if types is None:
            raise ApiError(404, f"Unknown method {route!r}")
        self.app.rate_limit.check(route)
        handler = HANDLERS.get(route)
        if handler is None:  # 405, not 5xx: the official client prints a 5xx as "Kaggle's side, try again later"
            raise ApiError(405, f"The local Kaggle does not support {route}; it implements the calls listed in "
                                "docs/local-kaggle.md. Run this command against Kaggle instead.")
        request = parse_request(types[0], data)
        check_request_names(request)
        ctx = Ctx(self.app.store, self.app.url, self.app.settings, self._user(), self.app.jobs,
                  {"tokens": self.app.tokens})
        result = handler(ctx, request)
        if isinstance(result, Redirect):
            self.send_response(302)
            self.send_header("Location", result.url)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif isinstance(result, KaggleObject):
            self._send_json(200, to_wire(result))
        else:
            raise TypeError(f"handler for {route} returned {type(result).__name__}")

    def _json_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise ApiError(411, "Send the request body with a Content-Length")
        try:
            length = parse_count(self.headers.get("Content-Length", "0").strip() or "0", what="Content-Length")
        except ApiError:
            self.close_connection = True
            raise
        if length > self.app.settings.max_json_bytes:
            self.close_connection = True
            raise ApiError(413, f"Request body of {length} bytes exceeds the {self.app.settings.max_json_bytes}-byte "
                                "limit")
        body = bytearray()
        while len(body) < length:
            try:
                chunk = self.rfile.read1(min(1 << 16, length - len(body)))
                how = "ended"
            except TimeoutError:
                chunk, how = b"", "stalled"
            if not chunk:
                self.close_connection = True
                raise ApiError(400, f"Request body {how} after {len(body)} of {length} bytes")
            body += chunk
        if not body:
            return {}
        try:
            return json.loads(bytes(body).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"Invalid JSON payload: {exc}") from None
        except RecursionError:
            raise ApiError(400, "Invalid JSON payload: nested too deeply") from None

    def _upload(self) -> None:
        m = re.fullmatch(r"/upload/([A-Za-z0-9_-]{16,64})", self.path)
        if not m:
            self.close_connection = True
            raise ApiError(404, "No such upload URL")
        drop = self._fault("upload") == DROP
        status, headers = transfer.receive_upload(self.app.store, self, m.group(1), drop_after=0.5 if drop else None)
        if status == 200:
            self._send_json(200, {"token": m.group(1)})
        else:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _log_stream(self, owner: str, slug: str) -> None:
        """``kaggle kernels logs --follow``: SSE of the log while the run lasts, the log blob once it ended."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        ctx = Ctx(self.app.store, self.app.url, self.app.settings, web.viewer(self), self.app.jobs)
        kernel = api_kernels.find_kernel(ctx, owner, slug)
        version = api_kernels.find_version(ctx, kernel, (query.get("versionLabel") or [""])[0])
        log_path = jobs_module.sandbox_dir(self.app.store, owner, slug, version["number"]) / "log.json"
        if version["status"] in FINISHED:
            data = log_path.read_bytes() if log_path.is_file() else b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while True:
            status = self.app.store.one("SELECT status FROM kernel_versions WHERE id=?", version["id"])["status"]
            entries = read_log(log_path)
            for entry in entries[sent:]:
                self.wfile.write(f"data: {json.dumps(entry)}\n\n".encode())
            sent = max(sent, len(entries))
            self.wfile.flush()
            if status in FINISHED:
                break
            time.sleep(0.2)
        self.wfile.write(b"data: END_OF_LOG\n\n")

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/health", "/health/"):
            self._send_json(200, {"ok": True, "service": SERVICE_NAME, "pid": os.getpid(),
                                  "data_dir": str(self.app.data_dir)})
            return
        logs = _LOGS_RE.fullmatch(path)
        if logs:
            self._log_stream(logs.group(1), logs.group(2))
            return
        if not path.startswith(("/api/", "/files/", "/upload/")):
            web.serve_get(self, path)  # a page: HTML, a 404 included
            return
        m = re.fullmatch(r"/files/([A-Za-z0-9_=-]+\.[0-9a-f]{32})/[^/]+", path)
        if not m:
            raise ApiError(404, f"No such file URL: {path[:200]!r}")
        if self._fault("download") == DROP:
            self.close_connection = True
            return
        target = transfer.resolve_signed(self.app.store, m.group(1))
        transfer.send_file(self, target, head=self.command == "HEAD")

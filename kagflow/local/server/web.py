"""The local Kaggle's web pages: HTML at Kaggle's own paths, rendered from the store the API serves.

Pages (GET; the paths the official client, kagglehub and this server's ``url`` fields print)::

    /                                          competitions, kernels (latest version), models, datasets
    /code/OWNER/SLUG[/versions/N]              versions, log (live while running), output, images, metrics.json
    /code/OWNER/SLUG?scriptVersionId=ID        the same, one version by its id
    /datasets/OWNER/SLUG[/versions/N]          versions and files
    /models/OWNER/MODEL[/FRAMEWORK/INSTANCE[/N]]   instances, versions, files, licence, base model
    /competitions/SLUG[/leaderboard|/submissions]

Sign-in (see :mod:`kagflow.local.server.web_login`)::

    POST /web/login-link    with the user's key (HTTP Basic or Bearer): {"url": one-time link, "expires_in": s}
    GET  /web/login/TOKEN   spends the link: a session cookie, then the index
    POST /web/logout        ends the session

Access is the API's (:mod:`kagflow.local.server.web_views`): the viewer is the Authorization header's user,
else the session cookie's, else nobody (public things only). Every page is autoescaped Jinja with a
Content-Security-Policy that allows this server's own styles, script, images and log stream and nothing else;
an unknown page is an HTML 404. Pages answer only requests addressed to this server's own host name
(127.0.0.1, localhost, [::1]), so a page of another site rebound to 127.0.0.1 by DNS is refused.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Callable, Optional

import jinja2

from kagflow.local.server import web_views
from kagflow.local.server.api import Ctx
from kagflow.local.server.protocol import ApiError
from kagflow.local.server.web_login import LINK_PATH, cookie_name

log = logging.getLogger("kagflow.local")
PAGES = Path(__file__).resolve().parent / "pages"
STATIC = {"style.css": "text/css; charset=utf-8", "live-log.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
STATIC_PATH = "/static/kagflow-local/"
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
MAX_FORM_BYTES = 4096

_ID = r"([A-Za-z0-9][A-Za-z0-9_-]{0,99})"
_N = r"([0-9]{1,18})"
ROUTES: list[tuple[re.Pattern, str, Callable]] = [
    (re.compile(r"/"), "index", lambda ctx, q: web_views.index(ctx)),
    (re.compile(rf"/code/{_ID}/{_ID}(?:/versions/{_N})?/?"), "kernel",
     lambda ctx, q, o, s, n: web_views.kernel(ctx, o, s, number=_int(n),
                                              script_version_id=_int(q.get("scriptVersionId")))),
    (re.compile(rf"/datasets/{_ID}/{_ID}(?:/versions/{_N})?/?"), "dataset",
     lambda ctx, q, o, s, n: web_views.dataset(ctx, o, s, number=_int(n))),
    (re.compile(rf"/models/{_ID}/{_ID}(?:/{_ID}/{_ID}(?:/{_N})?)?/?"), "model",
     lambda ctx, q, o, m, f, i, n: web_views.model(ctx, o, m, framework=f or "", instance=i or "", number=_int(n))),
    (re.compile(rf"/competitions/{_ID}/?"), "competition", lambda ctx, q, c: web_views.competition(ctx, c)),
    (re.compile(rf"/competitions/{_ID}/leaderboard/?"), "leaderboard", lambda ctx, q, c: web_views.leaderboard(ctx, c)),
    (re.compile(rf"/competitions/{_ID}/submissions/?"), "submissions", lambda ctx, q, c: web_views.submissions(ctx, c)),
]


def _int(text) -> Optional[int]:
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise ApiError(400, f"Invalid number {text[:40]!r}")
    return int(text)


def _when(ts) -> str:
    if ts is None:
        return "-"
    if hasattr(ts, "timestamp"):  # a kagglesdk datetime: naive UTC
        return ts.strftime("%Y-%m-%d %H:%M UTC")
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _size(n) -> str:
    size = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PAGES)), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(when=_when, duration=_duration, size=_size)


def render(template: str, **data) -> bytes:
    return ENV.get_template(f"{template}.html.j2").render(**data).encode("utf-8")


# ---------------------------------------------------------------------- answers

def _send(handler, status: int, body: bytes, content_type: str, headers: Optional[dict] = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _page(handler, status: int, template: str, viewer: Optional[str], **data) -> None:
    body = render(template, viewer=viewer, server_url=handler.app.url, **data)
    _send(handler, status, body, "text/html; charset=utf-8")


def _error_page(handler, err: ApiError, viewer: Optional[str] = None) -> None:
    _page(handler, err.code, "error", viewer, code=err.code, message=err.message)


def _redirect(handler, location: str, headers: Optional[dict] = None) -> None:
    handler.send_response(303)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()


# ---------------------------------------------------------------------- who is asking

def own_host(handler) -> bool:
    """The request names this server as its host (a loopback server answers its loopback names only)."""
    app = handler.app
    if app.host not in ("127.0.0.1", "localhost", "::1"):
        return True  # bound elsewhere on purpose (allow_non_loopback): the operator's call
    return handler.headers.get("Host", "") in {f"{name}:{app.port}" for name in LOOPBACK_NAMES}


def _session(handler) -> str:
    try:
        jar = SimpleCookie(handler.headers.get("Cookie", ""))
    except CookieError:
        return ""
    morsel = jar.get(cookie_name(handler.app.port))
    return morsel.value if morsel is not None else ""


def viewer(handler) -> Optional[str]:
    """Who a page (or the log stream) is for: the Authorization header's user (checked as the API checks it),
    else the session cookie's, else None."""
    if handler.headers.get("Authorization"):
        return handler._user()
    session = _session(handler)
    return handler.app.logins.user_of(session) if session else None


def _ctx(handler, user: Optional[str]) -> Ctx:
    app = handler.app
    return Ctx(app.store, app.url, app.settings, user, app.jobs)


# ---------------------------------------------------------------------- GET

def serve_get(handler, path: str) -> None:
    """Answer a GET/HEAD that is not an API, upload or download path: a page, a static file or an HTML 404."""
    user = None
    try:
        if not own_host(handler):
            raise ApiError(421, "This server answers pages addressed to 127.0.0.1 or localhost only")
        if path.startswith(STATIC_PATH):
            _static(handler, path[len(STATIC_PATH):])
            return
        user = viewer(handler)
        if path.startswith(LINK_PATH):
            _login(handler, path[len(LINK_PATH):])
            return
        query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(handler.path).query).items()}
        for pattern, template, view in ROUTES:
            m = pattern.fullmatch(path)
            if m:
                _page(handler, 200, template, user, **view(_ctx(handler, user), query, *m.groups()))
                return
        raise ApiError(404, f"There is no page at {path[:200]}")
    except ApiError as err:
        _error_page(handler, err, user)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True
    except Exception as exc:  # an HTML answer, never a stack trace
        log.exception("internal error rendering %s", path)
        handler.close_connection = True
        _error_page(handler, ApiError(500, f"Internal error in the local Kaggle ({type(exc).__name__})"), user)


def _static(handler, name: str) -> None:
    if name not in STATIC:
        raise ApiError(404, f"There is no file {name[:100]!r} here")
    body = (PAGES / "static" / name).read_bytes()
    _send(handler, 200, body, STATIC[name], {"Cache-Control": "no-cache"})


def _login(handler, token: str) -> None:
    if handler.command == "HEAD":  # a link checker or a preview must not spend the link
        _send(handler, 200, b"", "text/html; charset=utf-8")
        return
    found = handler.app.logins.redeem(token) if re.fullmatch(r"[A-Za-z0-9_-]{20,100}", token) else None
    if found is None:
        raise ApiError(403, "This sign-in link was used already or has expired: links work once, for "
                            f"{int(handler.app.logins.LINK_TTL_S)} seconds. Run `kagflow local open` again")
    session, _ = found
    cookie = (f"{cookie_name(handler.app.port)}={session}; Path=/; HttpOnly; SameSite=Strict; "
              f"Max-Age={int(handler.app.logins.SESSION_TTL_S)}")
    _redirect(handler, "/", {"Set-Cookie": cookie})


# ---------------------------------------------------------------------- POST

def serve_post(handler, path: str) -> None:
    """``/web/login-link`` (an API call: JSON in and out, the user's key required) and ``/web/logout``."""
    if path in ("/web/login-link", "/web/login-link/"):
        user = handler._user()
        if not user:
            raise ApiError(401, "Unauthenticated: send HTTP Basic username:key or a Bearer token")
        _discard_body(handler)
        token = handler.app.logins.link_token(user)
        handler._send_json(200, {"url": f"{handler.app.url}{LINK_PATH}{token}", "user": user,
                                 "expires_in": int(handler.app.logins.LINK_TTL_S)})
        return
    if path in ("/web/logout", "/web/logout/"):
        _discard_body(handler)
        if not own_host(handler):
            raise ApiError(421, "This server answers pages addressed to 127.0.0.1 or localhost only")
        session = _session(handler)
        if session:
            handler.app.logins.end(session)
        _redirect(handler, "/", {"Set-Cookie": f"{cookie_name(handler.app.port)}=; Path=/; HttpOnly; "
                                               "SameSite=Strict; Max-Age=0"})
        return
    raise ApiError(404, f"No such endpoint: {path[:200]!r}")


def _discard_body(handler) -> None:
    try:
        length = int(handler.headers.get("Content-Length", "0") or "0")
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_FORM_BYTES:
        handler.close_connection = True
        raise ApiError(413, f"Request body over {MAX_FORM_BYTES} bytes")
    if length:
        handler.rfile.read(length)


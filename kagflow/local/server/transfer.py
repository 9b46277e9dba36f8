"""Bytes in and out, streamed in chunks: resumable blob uploads and signed, ranged downloads.

Uploads follow the protocol the official client speaks to Google Cloud Storage
(``KaggleApi.upload_complete`` / ``_resume_upload``): a PUT of the body (optionally with
``Content-Range: bytes S-E/N``) answers 200 when the object is complete and 308 with
``Range: bytes=0-<last byte>`` when it is not; ``Content-Range: bytes */N`` with an empty body
asks how much arrived. Received bytes wait in ``uploads/<token>.part`` until the last one
arrives; then the file is hashed into the blob store.

Downloads are signed URLs ``/files/<payload>.<sig>/<name>`` (no credentials needed, like
Kaggle's signed GCS URLs) served from disk with ``Accept-Ranges``, ``ETag``,
``Last-Modified`` and 206 answers to ``Range``/``If-Range``. The payload names the file and the
:class:`~kagflow.local.server.access.Grant` it was issued under; each read re-checks the grant (404 once
the user may no longer see the version).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import re
import threading
import urllib.parse
from pathlib import Path
from typing import Optional

from kagflow.local.server.access import Grant, readable
from kagflow.local.server.names import parse_count
from kagflow.local.server.protocol import ApiError
from kagflow.local.server.store import CHUNK, Store

_QUERY_RE = re.compile(r"bytes \*/([0-9]{1,18})")
_RANGE_RE = re.compile(r"bytes ([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18})")
_token_locks: dict[str, threading.Lock] = {}
_token_locks_guard = threading.Lock()


class ClientGone(Exception):
    """The client closed the connection before sending the body it announced."""


def _lock_for(token: str) -> threading.Lock:
    with _token_locks_guard:
        return _token_locks.setdefault(token, threading.Lock())


def receive_upload(store: Store, handler, token: str, *, drop_after: Optional[float] = None) -> tuple[int, dict]:
    """Handle one PUT to an upload URL; return ``(status, headers)`` to answer with.

    ``drop_after`` (fault injection) keeps that share of the body, then raises :class:`ClientGone`
    as if the connection broke: the client must resume.
    """
    row = store.one("SELECT * FROM uploads WHERE token=?", token)
    if row is None:
        raise ApiError(404, "Upload session not found or expired")
    total = row["content_length"]
    part = store.root / "uploads" / f"{token}.part"
    length = _content_length(handler)
    content_range = handler.headers.get("Content-Range", "").strip()
    with _lock_for(token):
        if row["sha256"] is not None or store.one("SELECT sha256 FROM uploads WHERE token=?", token)["sha256"]:
            _discard(handler, length)
            return 200, {}
        received = part.stat().st_size if part.exists() else 0
        query = _QUERY_RE.fullmatch(content_range)
        if query:
            if int(query.group(1)) != total:
                raise ApiError(400, f"Content-Range total {query.group(1)} does not match the upload's {total} bytes")
            _discard(handler, length)
            return 308, _range_header(received)
        start = 0
        if content_range:
            m = _RANGE_RE.fullmatch(content_range)
            if not m:
                raise ApiError(400, f"Invalid Content-Range {content_range!r}")
            start, end, declared = (int(g) for g in m.groups())
            if declared != total or end < start or end >= total or end - start + 1 != length:
                raise ApiError(400, f"Content-Range {content_range!r} does not fit a {length}-byte body "
                                    f"of a {total}-byte upload")
        if start + length > total:
            raise ApiError(413, f"Body of {length} bytes from offset {start} exceeds the upload's {total} bytes")
        if start > received:
            raise ApiError(400, f"Upload resumes at byte {start} but only {received} bytes were received")
        digest = hashlib.sha256() if start == 0 else None
        limit = length if drop_after is None else int(length * drop_after)
        with open(part, "r+b" if part.exists() else "wb") as out:
            out.truncate(start)
            out.seek(start)
            got = _copy_body(handler.rfile, out, limit, digest)
        received = start + got
        if got < length:
            raise ClientGone(f"upload {token[:8]}...: body ended after {got} of {length} bytes")
        if received < total:
            return 308, _range_header(received)
        sha256, _ = store.ingest(part, digest.hexdigest() if digest else None)
        store.run("UPDATE uploads SET sha256=? WHERE token=?", sha256, token)
        return 200, {}


def _copy_body(rfile, out, length: int, digest) -> int:
    got = 0
    while got < length:
        try:
            chunk = rfile.read(min(CHUNK, length - got))
        except TimeoutError:  # a stalled client: keep what arrived, it can resume
            break
        if not chunk:
            break
        out.write(chunk)
        if digest is not None:
            digest.update(chunk)
        got += len(chunk)
    return got


def _discard(handler, length: int) -> None:
    if length:
        handler.close_connection = True


def _range_header(received: int) -> dict:
    return {"Range": f"bytes=0-{received - 1}"} if received > 0 else {}


def _content_length(handler) -> int:
    if handler.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
        raise ApiError(411, "Chunked uploads are not supported: send Content-Length")
    return parse_count(handler.headers.get("Content-Length", "0").strip() or "0", what="Content-Length")


# ---------------------------------------------------------------------- signed downloads

def signed_url(store: Store, base_url: str, target: Path, name: str, grant: Grant) -> str:
    """A credential-free URL that serves ``target`` (a file under the data dir) as ``name`` while ``grant`` holds."""
    rel = os.path.relpath(Path(target).resolve(), store.root)
    if rel.startswith(".."):
        raise ValueError(f"{target} is outside the data dir")
    claims = {"p": rel, "g": [grant.kind, grant.set_id, grant.user]}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    sig = hmac.new(store.secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{base_url}/files/{payload}.{sig}/{urllib.parse.quote(name.split('/')[-1])}"


def resolve_signed(store: Store, token: str) -> Path:
    """The file a signed link serves, after checking its signature and that its grant still holds."""
    payload, _, sig = token.rpartition(".")
    expected = hmac.new(store.secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
    if not payload or not hmac.compare_digest(sig, expected):
        raise ApiError(403, "Invalid or expired download link")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if "g" not in claims:  # signed by an older release, before links carried their grant
        raise ApiError(403, "Invalid or expired download link: ask for the download again")
    if not readable(store, Grant(*claims["g"])):
        raise ApiError(404, "File not found")
    path = (store.root / claims["p"]).resolve()
    if store.root not in path.parents or not path.is_file():
        raise ApiError(404, "File not found")
    return path


def send_file(handler, path: Path, *, head: bool = False, etag: Optional[str] = None) -> None:
    """Answer a GET with ``path``: whole (200) or one byte range (206), streamed in chunks."""
    stat = path.stat()
    size = stat.st_size
    etag = etag or f'"{stat.st_ino:x}-{stat.st_size:x}-{int(stat.st_mtime_ns):x}"'
    last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    start, end, status = 0, size - 1, 200
    wanted = handler.headers.get("Range")
    if_range = handler.headers.get("If-Range")
    if wanted and (if_range is None or if_range in (etag, last_modified)):
        m = re.fullmatch(r"bytes=([0-9]{1,18})-([0-9]{0,18})", wanted.strip())
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size or start > end:
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{size}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            status = 206
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(end - start + 1 if size else 0))
    handler.send_header("Accept-Ranges", "bytes")
    handler.send_header("ETag", etag)
    handler.send_header("Last-Modified", last_modified)
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{end}/{size}")
    handler.end_headers()
    if head or size == 0:
        return
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            handler.wfile.write(chunk)
            left -= len(chunk)

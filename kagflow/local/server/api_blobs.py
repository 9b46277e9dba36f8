"""blobs.BlobApiService and security.OAuthService (token introspection)."""

from __future__ import annotations

from kagglesdk.blobs.types.blob_api_service import ApiBlobType, ApiStartBlobUploadResponse
from kagglesdk.security.types.oauth_service import IntrospectTokenResponse

from kagflow.local.server.api import Ctx, new_token, now, route
from kagflow.local.server.names import check_name
from kagflow.local.server.protocol import ApiError


@route("blobs.BlobApiService/StartBlobUpload")
def start_blob_upload(ctx: Ctx, req) -> ApiStartBlobUploadResponse:
    user = ctx.require_user()
    name = check_name(req.name)
    if req.content_length is None or req.content_length < 0:
        raise ApiError(400, "contentLength must be given and not negative")
    if req.content_length > ctx.settings.max_blob_bytes:
        raise ApiError(413, f"{name!r} is {req.content_length} bytes; the limit is {ctx.settings.max_blob_bytes}")
    blob_type = req.type.name if req.type is not None else ApiBlobType.API_BLOB_TYPE_UNSPECIFIED.name
    token = new_token()
    ctx.store.run("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, NULL, ?)",
                  token, user, name, blob_type, req.content_length, now())
    if req.content_length == 0:  # nothing to PUT: an empty file is complete at once
        empty = ctx.store.root / "uploads" / f"{token}.part"
        empty.touch()
        sha, _ = ctx.store.ingest(empty)
        ctx.store.run("UPDATE uploads SET sha256=? WHERE token=?", sha, token)
    resp = ApiStartBlobUploadResponse()
    resp.token = token
    resp.create_url = f"{ctx.base_url}/upload/{token}"
    return resp


@route("security.OAuthService/IntrospectToken")
def introspect_token(ctx: Ctx, req) -> IntrospectTokenResponse:
    resp = IntrospectTokenResponse()
    username = ctx.extras.get("tokens", {}).get(req.token)
    resp.active = bool(username)
    if username:
        resp.username = username
    return resp

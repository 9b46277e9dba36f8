"""api.v1.DiagnosticsService/Hello: kagglehub's credential check (``whoami()``, ``login()``, ``get_username()``).

kagglesdk has no binding for it (kagglehub builds the request by hand), so its types are
:data:`kagflow.local.server.protocol.HAND_MADE`. Kaggle answers ``{"userName": ...}`` for good credentials and
``{"code": 401, ...}`` for bad ones, which is what kagglehub tells apart.
"""

from __future__ import annotations

from kagflow.local.server.api import Ctx, route
from kagflow.local.server.protocol import ApiHelloResponse


@route("api.v1.DiagnosticsService/Hello")
def hello(ctx: Ctx, req) -> ApiHelloResponse:
    resp = ApiHelloResponse()
    resp.user_name = ctx.require_user()  # 401 without credentials, as for a bad key
    return resp

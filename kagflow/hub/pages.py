"""The local Kaggle's web pages, from the client's side: a one-time link that signs a browser in.

A browser cannot send the Kaggle key, so ``kagflow local open`` asks the server for a single-use link with
the official client's own credentials (its HTTP session: the key as HTTP Basic, or the access token as
Bearer) and opens that; the key never goes into a URL or a cookie (kagflow.local.server.web_login).
"""

from __future__ import annotations

from dataclasses import dataclass

from kagflow.errors import ConfigError
from kagflow.hub.gateway import Gateway

LOGIN_LINK_PATH = "/web/login-link"


@dataclass(frozen=True)
class LoginLink:
    url: str          # works once
    user: str         # whom it signs in: the credentials' user
    expires_in: int   # seconds


def login_link(gw: Gateway) -> LoginLink:
    """A one-time link to the local Kaggle's index, signed in as the credentials' user."""
    endpoint = gw.endpoint.endpoint
    if endpoint is None:
        raise ConfigError("the web pages are the local Kaggle's; this project targets Kaggle",
                          hint="open https://www.kaggle.com in a browser, or set [project] target = \"local\"")

    def ask() -> LoginLink:
        http = gw.api.build_kaggle_client()._http_client
        http._init_session()  # the official client's credentials on its session (timeouts: kagflow.hub.client)
        response = http._session.post(f"{endpoint}{LOGIN_LINK_PATH}")
        response.raise_for_status()
        answer = response.json()
        return LoginLink(answer["url"], answer["user"], int(answer["expires_in"]))

    return gw.call(ask, what="sign-in link for the local Kaggle's pages", handle=endpoint)

"""Signing a browser in to the local Kaggle's pages, without the Kaggle key ever in a URL or a cookie.

A browser cannot send the user's key, so ``kagflow local open`` makes an authenticated API call
(``POST /web/login-link`` with the key, as every API call) and gets a one-time link
``/web/login/<token>``: the token is good for :attr:`Logins.LINK_TTL_S` seconds and one use. Opening it
swaps it for a session (an ``HttpOnly; SameSite=Strict`` cookie, :attr:`Logins.SESSION_TTL_S` seconds);
the pages then show that user's private resources. Without the cookie (or an Authorization header) a
page shows public things only, key checking on or off. Only digests of the tokens are kept, in memory:
a server restart signs every browser out.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Callable, Optional

LINK_PATH = "/web/login/"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Logins:
    """One-time links and the sessions they open (thread-safe; class constants are the lifetimes)."""

    LINK_TTL_S = 120.0            # time to open a link `kagflow local open` printed
    SESSION_TTL_S = 12 * 3600.0   # a working day; `kagflow local open` again after that

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._links: dict[str, tuple[str, float]] = {}     # digest -> (user, expiry)
        self._sessions: dict[str, tuple[str, float]] = {}  # digest -> (user, expiry)

    def link_token(self, user: str) -> str:
        """A new single-use token that signs ``user`` in."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_expired()
            self._links[_digest(token)] = (user, self._clock() + self.LINK_TTL_S)
        return token

    def redeem(self, token: str) -> Optional[tuple[str, str]]:
        """``(session token, user)`` for a valid link token, which is spent; None if unknown, used or expired."""
        with self._lock:
            self._drop_expired()
            found = self._links.pop(_digest(token), None)
            if found is None:
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[_digest(session)] = (found[0], self._clock() + self.SESSION_TTL_S)
            return session, found[0]

    def user_of(self, session: str) -> Optional[str]:
        """The user a session cookie belongs to, or None (unknown or expired)."""
        with self._lock:
            found = self._sessions.get(_digest(session))
            if found is None or found[1] <= self._clock():
                return None
            return found[0]

    def end(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(session), None)

    def _drop_expired(self) -> None:
        now = self._clock()
        for table in (self._links, self._sessions):
            for key in [k for k, (_, expiry) in table.items() if expiry <= now]:
                del table[key]


def cookie_name(port: int) -> str:
    """Cookies are per host, not per port: each server's cookie has its own name, so two local Kaggles on
    127.0.0.1 never overwrite each other's session."""
    return f"kagflow_session_{int(port)}"

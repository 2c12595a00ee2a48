"""Cross-site request forgery defences for cookie-authenticated forms and sign-in (the JSON API's Origin check for
cookie-authenticated calls lives in the middleware).

- ``same_origin``: a form post must come from this site: ``Sec-Fetch-Site`` is not cross-site or same-site, and an
  ``Origin`` header, when sent, names this host (``Origin: null`` is refused).
- Double-submit token for the sign-in form (there is no session yet to bind a token to): a random value in a
  ``__Host-`` cookie (HttpOnly, Secure, Path=/, no Domain) and the same value in the form.
- The OpenID Connect ``state`` is bound to the browser the same way: the cookie set when sign-in starts must match
  the ``state`` the provider sends back, so another browser cannot complete an attacker's sign-in.

Over plain HTTP (development on localhost) browsers refuse ``Secure`` cookies, so there the cookies drop the
``__Host-`` prefix and the Secure flag; production always uses the prefixed, Secure form.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final
from urllib.parse import urlsplit

from fastapi import Request, Response

__all__ = [
    "SIGN_IN_COOKIE",
    "check_sign_in_cookie",
    "clear_sign_in_cookie",
    "new_sign_in_cookie",
    "same_origin",
    "secure_request",
]

SIGN_IN_COOKIE: Final = "refracture_signin"
_TTL_S: Final = 600


def secure_request(request: Request, production: bool) -> bool:
    """Whether cookies are Secure (and ``__Host-``): always in production, else when the request came over HTTPS."""
    return production or request.url.scheme == "https"


def _name(secure: bool) -> str:
    return f"__Host-{SIGN_IN_COOKIE}" if secure else SIGN_IN_COOKIE


def same_origin(request: Request) -> bool:
    """A form post from this site (not another site's page)."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.url.netloc


def new_sign_in_cookie(response: Response, secure: bool, value: str | None = None) -> str:
    """Set the sign-in binding cookie (a fresh random value unless given, e.g. the OIDC state); returns the value."""
    value = value or secrets.token_urlsafe(32)
    response.set_cookie(_name(secure), value, max_age=_TTL_S, path="/", httponly=True, samesite="lax", secure=secure)
    return value


def check_sign_in_cookie(request: Request, secure: bool, expected: str) -> bool:
    """Whether the browser holds the binding cookie with this value."""
    held = request.cookies.get(_name(secure), "")
    return bool(held) and bool(expected) and hmac.compare_digest(held.encode(), expected.encode())


def clear_sign_in_cookie(response: Response, secure: bool) -> None:
    """Forget the binding once it has been used."""
    response.delete_cookie(_name(secure), path="/", secure=secure, httponly=True, samesite="lax")

"""Only the viewer's own page may talk to the viewer.

A server bound to 127.0.0.1 is still reachable from any web page open in the user's browser: a
page on another site can open ``ws://127.0.0.1:8080`` (browsers send its ``Origin`` but do not
stop it), and a DNS-rebinding name can load the page itself under a foreign ``Host``. viser's
websocket server checks neither, so every HTTP request and websocket handshake to a guarded port
passes :func:`allowed` first:

- ``Host`` must be one of the viewer's own names (loopback names and the ``--host`` address, each
  with the port) unless the viewer listens on every address (``0.0.0.0`` / ``::``);
- a request that carries an ``Origin`` (every browser websocket does) must come from the same
  scheme, host and port as its ``Host``: the viewer's own page;
- with a token (the default, see ``dposer-view --token``) a request must carry it: in the URL
  (``?token=...``, as printed at start) or in the cookie the first such page load sets, which the
  page's own requests and websocket then send. A page that guesses the address still lacks it.

Every page load also gets a browser cookie (:data:`BROWSER_COOKIE`, random, HttpOnly, same-site)
that the page's websocket then carries: :func:`browser_id` reads it, so the app can give a tab
that reloads the work it had (see :class:`viewer.app.ViewerApp`).

The check wraps the ``process_request`` hook viser passes to ``websockets.asyncio.server.serve``
(installed once, before the server starts); ports without a registered policy pass unchanged.
"""

from __future__ import annotations

import hmac
import http
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import websockets.asyncio.server
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def new_token() -> str:
    """An unguessable access token (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class HostPolicy:
    """Who may reach a viewer listening on ``host`` (the ``--host`` value); ``token``: the access
    token requests must carry (None: none needed)."""

    host: str
    token: str | None = None

    def cookie_name(self, port: int) -> str:
        return f"dposer_view_token_{port}"  # one per port: two viewers on one machine keep their own

    def token_given(self, request: Request, port: int) -> str | None:
        """How ``request`` carries the right token: ``"url"``, ``"cookie"``, or None (always None
        for a policy without a token)."""
        if self.token is None:
            return None
        query = parse_qs(urlsplit(request.path).query).get("token", [])
        if any(hmac.compare_digest(value.encode(), self.token.encode()) for value in query):
            return "url"
        value = _cookie(request, self.cookie_name(port))
        if value is not None and hmac.compare_digest(value.encode(), self.token.encode()):
            return "cookie"
        return None

    def allowed(self, host_header: str | None, origin: str | None, port: int) -> bool:
        """Whether a request with these ``Host`` / ``Origin`` headers, to ``port``, may go on."""
        if not host_header:
            return False
        name, header_port = _split_host(host_header)
        if header_port not in (None, port):
            return False
        if self.host not in WILDCARD_HOSTS and name not in {*LOOPBACK_NAMES, self.host.strip("[]")}:
            return False  # a foreign name pointed at this address (DNS rebinding)
        if origin is None:
            return True  # not a browser page (a script on this machine): nothing cross-site
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return False  # "null" (sandboxed frames, files) and the like
        return (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) == (name, port)


_policies: dict[int, HostPolicy] = {}
_lock = threading.Lock()
_original_serve: Callable[..., Any] | None = None


def guard_port(port: int, policy: HostPolicy) -> None:
    """Check every request to the local ``port`` against ``policy`` from now on."""
    install()
    with _lock:
        _policies[port] = policy


def release_port(port: int) -> None:
    with _lock:
        _policies.pop(port, None)


def install() -> None:
    """Wrap ``websockets.asyncio.server.serve`` (once) so that servers started after this check
    their guarded ports; call before the viser server is created."""
    global _original_serve
    with _lock:
        if _original_serve is not None:
            return
        _original_serve = websockets.asyncio.server.serve
        original = _original_serve

        def serve(*args: Any, process_request: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
            return original(*args, process_request=_checked(process_request), **kwargs)

        websockets.asyncio.server.serve = serve  # type: ignore[assignment]


def _checked(process_request: Callable[..., Any] | None) -> Callable[..., Any]:
    def check(connection: Any, request: Request) -> Response | None:
        port = connection.local_address[1]
        with _lock:
            policy = _policies.get(port)
        if policy is None:
            return process_request(connection, request) if process_request is not None else None
        if not policy.allowed(request.headers.get("Host"), request.headers.get("Origin"), port):
            return _forbidden(b"")
        carried = policy.token_given(request, port)
        if policy.token is not None and carried is None:
            return _forbidden(NEEDS_TOKEN)
        response = process_request(connection, request) if process_request is not None else None
        if response is not None:
            if carried == "url":
                # The page's own requests and its websocket carry the token from now on.
                response.headers["Set-Cookie"] = (
                    f"{policy.cookie_name(port)}={policy.token}; Path=/; HttpOnly; SameSite=Strict")
            if _cookie(request, BROWSER_COOKIE) is None:
                response.headers["Set-Cookie"] = f"{BROWSER_COOKIE}={new_token()}; Path=/; HttpOnly; SameSite=Strict"
        return response

    return check


BROWSER_COOKIE = "dposer_view_browser"


def _cookie(request: Request, name: str) -> str | None:
    for header in request.headers.get_all("Cookie"):
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name and value:
                return value
    return None


def browser_id(request: Request | None) -> str | None:
    """The browser cookie a websocket handshake ``request`` carried (None: none, or no request)."""
    if request is None:
        return None
    value = _cookie(request, BROWSER_COOKIE)
    return value if value is not None and len(value) <= 64 else None


NEEDS_TOKEN = (b"<!doctype html><title>dposer-view</title><p>This viewer needs its access token: open the "
               b"address dposer-view printed when it started (it ends in <code>?token=...</code>).</p>")


def _forbidden(body: bytes) -> Response:
    headers = {"Content-Length": str(len(body))}
    if body:
        headers["Content-Type"] = "text/html; charset=utf-8"
    return Response(http.HTTPStatus.FORBIDDEN, "Forbidden", Headers(headers), body)


def _split_host(value: str) -> tuple[str, int | None]:
    """``"127.0.0.1:8080"`` -> ``("127.0.0.1", 8080)``; ``"[::1]:80"`` -> ``("::1", 80)``."""
    parts = urlsplit(f"//{value}")
    try:
        port = parts.port
    except ValueError:
        return ("", -1)
    return ((parts.hostname or "").lower(), port)

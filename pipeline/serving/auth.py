"""Bearer-token protection of the worker's web server, for deployments off loopback.

With WEB_AUTH_TOKEN set, every request except the probe and scrape endpoints must present the token:
as `Authorization: Bearer <token>` (API clients), or as the `livecommerce_token` cookie, which a
browser gets by opening the page once as `/?token=<token>` (wall screens cannot send headers).
The token is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from aiohttp import web

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health", "/metrics"})  # kubelet probes and Prometheus scrape without a token
COOKIE = "livecommerce_token"


def bearer_token_middleware(token: str):
    expected = token.encode()

    def presented(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer ") :]
        return request.query.get("token") or request.cookies.get(COOKIE, "")

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in OPEN_PATHS:
            return await handler(request)
        if not hmac.compare_digest(presented(request).encode(), expected):
            return web.json_response(
                {"error": "unauthorized", "message": "send 'Authorization: Bearer <WEB_AUTH_TOKEN>'"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="livecommerce"'},
            )
        response = await handler(request)
        if "token" in request.query:
            response.set_cookie(COOKIE, request.query["token"], httponly=True, samesite="Strict")
        return response

    return middleware


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def protect(web_app: web.Application, token: str, host: str) -> None:
    """Require `token` on `web_app` when set; warn when serving beyond loopback without one."""
    if token:
        web_app.middlewares.append(bearer_token_middleware(token))
    elif not is_loopback(host):
        log.warning(
            "WEB_HOST=%s is not loopback and WEB_AUTH_TOKEN is unset: the API is open to anyone", host
        )

"""Bearer-token protection of the worker's web server, and the rule that keeps it off open networks.

With WEB_AUTH_TOKEN set, every request except the probe and scrape endpoints must present the token:
  - API clients send `Authorization: Bearer <token>`;
  - a browser (a wall screen cannot send headers) opens `/`, gets a small login form (HTTP 401) and
    POSTs the token to `/login`; the answer sets the `livecommerce_session` cookie and redirects back.
The cookie holds an HMAC of the token, not the token; it is HttpOnly, SameSite=Strict, Secure when the
request arrived over TLS (directly or as `X-Forwarded-Proto: https` from a proxy), and is void once the
token changes. A query parameter is never a credential (`/?token=` was one before: that contract is
narrowed on purpose, a token in a URL ends up in logs, history and Referer headers).
The token is compared in constant time and never logged or echoed.

`protect` refuses to serve a non-loopback WEB_HOST without a token unless WEB_ALLOW_NO_TOKEN is set.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging

from aiohttp import web

from pipeline.settings import SettingsError

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health", "/metrics"})  # kubelet probes and Prometheus scrape without a token
COOKIE = "livecommerce_session"
LOGIN_PATH = "/login"
COOKIE_MAX_AGE_S = 30 * 24 * 3600  # a wall screen stays logged in for a month
MAX_TOKEN_CHARS = 4096  # longer form fields are refused before any comparison
LOGIN_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>登录 Log in · livecommerce</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;background:#0f1420;color:#e8ecf4;display:grid;place-items:center;
height:100vh;margin:0}}form{{display:grid;gap:.6em}}input,button{{font-size:1.1em;padding:.4em}}</style>
</head><body><form method="post" action="/login">
<label for="token">访问令牌 Access token (WEB_AUTH_TOKEN)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">{error}
<button type="submit">登录 Log in</button></form></body></html>
"""


def session_value(token: str) -> str:
    """The cookie's value for `token`: derived, so the cookie jar never holds the token itself."""
    return hmac.new(token.encode(), b"livecommerce web session v1", hashlib.sha256).hexdigest()


def is_tls(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def safe_next(raw: str) -> str:
    """A same-origin path of this server to return to after login; anything else becomes `/`."""
    if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw and len(raw) <= 2048:
        return raw
    return "/"


def login_page(next_path: str, error: str = "") -> web.Response:
    notice = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    body = LOGIN_PAGE.format(next=html.escape(safe_next(next_path), quote=True), error=notice)
    return web.Response(
        text=body,
        status=401,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="livecommerce"'},
    )


def bearer_token_middleware(token: str):
    expected = token.encode()
    expected_session = session_value(token).encode()

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return hmac.compare_digest(header[len("Bearer ") :].encode(), expected)
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), expected_session)

    async def login(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return login_page("/")
        form = await request.post()
        presented, next_path = str(form.get("token", "")), str(form.get("next", "/"))
        if len(presented) > MAX_TOKEN_CHARS or not hmac.compare_digest(presented.encode(), expected):
            return login_page(next_path, "令牌错误 Wrong token")
        response = web.Response(
            status=303, headers={"Location": safe_next(next_path), "Cache-Control": "no-store"}
        )
        response.set_cookie(
            COOKIE,
            expected_session.decode(),
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=is_tls(request),
        )
        return response

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in OPEN_PATHS:
            return await handler(request)
        if request.path == LOGIN_PATH:
            return await login(request)
        if authorized(request):
            return await handler(request)
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return login_page(request.path_qs)
        return web.json_response(
            {"error": "unauthorized", "message": "send 'Authorization: Bearer <WEB_AUTH_TOKEN>'"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="livecommerce"'},
        )

    return middleware


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def protect(web_app: web.Application, token: str, host: str, allow_no_token: bool = False) -> None:
    """Require `token` on `web_app` when set. Without one, a non-loopback `host` raises `SettingsError`
    unless `allow_no_token` (WEB_ALLOW_NO_TOKEN) says serving it open is intended; then it warns."""
    if token:
        web_app.middlewares.append(bearer_token_middleware(token))
    elif not is_loopback(host):
        if not allow_no_token:
            raise SettingsError(
                f"WEB_HOST={host} is not a loopback address and WEB_AUTH_TOKEN is unset: the page and API "
                "would be open to anyone who can reach it. Set WEB_AUTH_TOKEN, bind WEB_HOST=127.0.0.1, "
                "or set WEB_ALLOW_NO_TOKEN=1 if something in front of the worker controls access"
            )
        log.warning(
            "WEB_HOST=%s is not loopback and WEB_AUTH_TOKEN is unset (WEB_ALLOW_NO_TOKEN=1): "
            "the page and API are open to anyone who can reach them",
            host,
        )

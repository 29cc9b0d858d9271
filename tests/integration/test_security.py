"""Security settings: Kafka TLS/SASL options, ClickHouse CA, the web token; no secret leaks."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

import faust
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from harness import WorkerProcess, isolated_env

from pipeline.app import faust_credentials
from pipeline.clickhouse.clients import connection_args
from pipeline.kafka_options import client_options
from pipeline.serving.auth import COOKIE, is_loopback, protect, session_value
from pipeline.settings import Settings, SettingsError

SASL = {
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "pipeline",
    "KAFKA_SASL_PASSWORD": "kafka-secret",
}


def test_sasl_ssl_reaches_every_kafka_client():
    s = Settings.from_env(SASL)
    options = client_options(s)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "pipeline" and options["sasl_plain_password"] == "kafka-secret"
    assert options["ssl_context"] is not None
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.ssl_context is not None


def test_plaintext_is_the_default_and_adds_nothing():
    s = Settings.from_env({})
    assert client_options(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None


def test_tls_without_sasl(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not used until a connection is made")
    with pytest.raises(SettingsError, match="KAFKA_SSL_CAFILE"):
        Settings.from_env(
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")}
        )
    s = Settings.from_env({"CLICKHOUSE_URL": "https://ch:8443", "CLICKHOUSE_CA_FILE": str(ca)})
    args = connection_args(s)
    assert args["secure"] is True and args["ca_cert"] == str(ca)


def test_sasl_needs_credentials_and_names_them():
    with pytest.raises(SettingsError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    with pytest.raises(SettingsError, match="KAFKA_SASL_MECHANISM"):
        Settings.from_env({**SASL, "KAFKA_SASL_MECHANISM": "MD5"})


def test_secrets_never_appear_in_the_settings_repr():
    s = Settings.from_env({**SASL, "CLICKHOUSE_PASSWORD": "ch-secret", "WEB_AUTH_TOKEN": "web-secret"})
    text = repr(s)
    for secret in ("kafka-secret", "ch-secret", "web-secret"):
        assert secret not in text


async def _client(token: str) -> TestClient:
    app = web.Application()

    async def ok(request):
        return web.json_response({"ok": True})

    for path in ("/", "/health", "/metrics", "/api/campaigns"):
        app.router.add_get(path, ok)
    protect(app, token, "0.0.0.0", allow_no_token=not token)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.mark.network
async def test_web_token_protects_the_api_and_page_but_not_probes():
    client = await _client("s3cret")
    try:
        for path in ("/health", "/metrics"):
            assert (await client.get(path)).status == 200
        for path in ("/", "/api/campaigns"):
            denied = await client.get(path)
            assert denied.status == 401 and "s3cret" not in await denied.text()
        assert (await client.get("/api/campaigns", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/campaigns", headers={"Authorization": "Bearer s3cret"})).status == 200
    finally:
        await client.close()


@pytest.mark.network
async def test_a_query_parameter_is_never_a_credential_nor_a_cookie():
    client = await _client("s3cret")
    try:
        for path in ("/?token=s3cret", "/api/campaigns?token=s3cret"):
            denied = await client.get(path)
            assert denied.status == 401 and not denied.cookies
        assert (await client.get("/api/campaigns")).status == 401
        # Even an authorized request does not turn a query parameter into a cookie.
        ok = await client.get("/?token=chosen", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200 and "Set-Cookie" not in ok.headers
        assert not list(client.session.cookie_jar)
    finally:
        await client.close()


@pytest.mark.network
async def test_browser_login_form_sets_a_strict_http_only_cookie_of_a_derived_value():
    client = await _client("s3cret")
    try:
        form = await client.get("/?campaign=demo")
        page = await form.text()
        assert form.status == 401 and 'method="post" action="/login"' in page
        assert 'value="/?campaign=demo"' in page
        wrong = await client.post("/login", data={"token": "nope", "next": "/"}, allow_redirects=False)
        assert wrong.status == 401 and "Set-Cookie" not in wrong.headers
        assert (await client.post("/login", data={"token": "x" * 5000})).status == 401
        good = await client.post(
            "/login", data={"token": "s3cret", "next": "/?campaign=demo"}, allow_redirects=False
        )
        assert good.status == 303 and good.headers["Location"] == "/?campaign=demo"
        cookie = good.headers["Set-Cookie"]
        assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here; see the TLS case below
        assert "s3cret" not in cookie and session_value("s3cret") in cookie
        assert (await client.get("/api/campaigns")).status == 200  # the cookie jar sends it
        assert (await client.get("/")).status == 200
        # Behind a TLS-terminating proxy the cookie is Secure; an off-site `next` returns to "/".
        tls = await client.post(
            "/login",
            data={"token": "s3cret", "next": "//evil.example/"},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        )
        assert "Secure" in tls.headers["Set-Cookie"] and tls.headers["Location"] == "/"
    finally:
        await client.close()


@pytest.mark.network
async def test_a_session_cookie_for_another_token_is_refused():
    client = await _client("s3cret")
    try:
        client.session.cookie_jar.update_cookies({COOKIE: session_value("old-token")})
        assert (await client.get("/api/campaigns")).status == 401
    finally:
        await client.close()


@pytest.mark.network
async def test_no_token_leaves_the_api_open_when_allowed():
    client = await _client("")
    try:
        assert (await client.get("/api/campaigns")).status == 200
    finally:
        await client.close()


def test_serving_beyond_loopback_without_a_token_needs_an_explicit_setting():
    for host in ("0.0.0.0", "::", "10.1.2.3", "worker-1"):
        with pytest.raises(SettingsError, match=r"WEB_AUTH_TOKEN is unset.*WEB_ALLOW_NO_TOKEN=1"):
            protect(web.Application(), "", host)
        protect(web.Application(), "", host, allow_no_token=True)
    for host in ("127.0.0.1", "::1", "localhost"):
        protect(web.Application(), "", host)
    assert Settings.from_env({}).web_allow_no_token is False
    assert Settings.from_env({"WEB_ALLOW_NO_TOKEN": "1"}).web_allow_no_token is True
    with pytest.raises(SettingsError, match="WEB_ALLOW_NO_TOKEN"):
        Settings.from_env({"WEB_ALLOW_NO_TOKEN": "yes please"})


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.kafka
@pytest.mark.clickhouse
def test_real_worker_serves_none_of_faust_pages_and_no_query_token(settings_env, tmp_path):
    env = isolated_env(settings_env, tmp_path, WEB_AUTH_TOKEN="worker-token", TOPIC_PARTITIONS="1",
                       APP_WEB_TABLES_ENABLED="true", APP_WEB_ROUTER_ENABLED="true")  # fmt: skip
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    base = f"http://127.0.0.1:{worker.port}"
    bearer = {"Authorization": "Bearer worker-token"}
    try:
        assert _status(f"{base}/api/campaigns", bearer) in (200, 503)  # the token works (ClickHouse aside)
        # Faust's own pages would serve topology and state-table contents: none is registered, even
        # with the APP_WEB_*_ENABLED variables Faust reads set.
        faust_pages = ("/router/", "/router/state/key/", "/table/", "/table/state/", "/table/state/k/",
                       "/table/window-state/", "/graph/", "/stats/", "/assignment/",
                       "/performance/")  # fmt: skip
        for path in faust_pages:
            assert _status(base + path, bearer) == 404, path
        assert _status(f"{base}/api/campaigns?token=worker-token") == 401
        for limit in ("%C2%B2", "9" * 5000, "-1", ""):  # '²', 5,000 digits: once 503
            assert _status(f"{base}/api/campaigns/demo/leaderboard?limit={limit}", bearer) == 400, limit
        assert _status(f"{base}/?token=worker-token") == 401
        assert _status(f"{base}/health") == 200
    finally:
        assert worker.stop() == 0, worker.log_tail()


@pytest.mark.kafka
@pytest.mark.clickhouse
def test_real_worker_refuses_an_open_non_loopback_address(settings_env, tmp_path):
    env = isolated_env(settings_env, tmp_path, WEB_HOST="0.0.0.0")
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "worker"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "WEB_HOST=0.0.0.0 is not a loopback address and WEB_AUTH_TOKEN is unset" in result.stderr

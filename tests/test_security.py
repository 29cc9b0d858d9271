"""Security settings: Kafka TLS/SASL options, ClickHouse CA, the web token; no secret leaks."""

from __future__ import annotations

import faust
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.clickhouse.clients import connection_args
from pipeline.kafka_options import client_options, faust_credentials
from pipeline.serving.auth import is_loopback, protect
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
    protect(app, token, "0.0.0.0")
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
        # A wall screen opens the page once with ?token=, then its requests carry the cookie.
        assert (await client.get("/?token=s3cret")).status == 200
        assert (await client.get("/api/campaigns")).status == 200
    finally:
        await client.close()


@pytest.mark.network
async def test_no_token_leaves_the_api_open():
    client = await _client("")
    try:
        assert (await client.get("/api/campaigns")).status == 200
    finally:
        await client.close()


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")

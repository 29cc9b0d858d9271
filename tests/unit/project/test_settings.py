from pathlib import Path

import pytest

from pipeline.settings import Settings, SettingsError, redact_url


def test_defaults_match_the_documented_values():
    s = Settings.from_env({})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.clickhouse_url == "http://127.0.0.1:8123"
    assert s.web_port == 6066
    assert s.topics.inputs == ("live.views", "live.clicks", "live.orders")
    assert s.topics.deadletter == "live.deadletter" and s.topics.late == "live.late"
    assert s.max_clock_skew_ms == 60_000 <= s.allowed_lateness_ms
    assert s.idle_partition_ms == 60_000
    assert s.dedup_horizon_ms >= s.window_ms + s.allowed_lateness_ms


def test_values_are_read_from_the_environment(tmp_path: Path):
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9093,k2:9094",
            "CLICKHOUSE_URL": "https://ch.example:8443",
            "WEB_PORT": "7000",
            "TOPIC_VIEWS": "t.views",
            "WINDOW_SECONDS": "10",
            "LIVECOMMERCE_LOCAL_DIR": str(tmp_path),
        }
    )
    assert s.kafka_bootstrap_servers == "k1:9093,k2:9094"
    assert s.clickhouse_url == "https://ch.example:8443"
    assert s.web_port == 7000
    assert s.topics.views == "t.views"
    assert s.window_ms == 10_000
    assert s.local_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WEB_PORT", "http"),
        ("WEB_PORT", "70000"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("KAFKA_BOOTSTRAP_SERVERS", "h:1,h:x"),
        ("CLICKHOUSE_URL", "ftp://x:1"),
        ("CLICKHOUSE_URL", "http://x:notaport"),
        ("WINDOW_SECONDS", "0"),
        ("TOPIC_ORDERS", "bad topic"),
        ("LOG_LEVEL", "loud"),
        ("DEDUP_HORIZON_SECONDS", "60"),
    ],
)
def test_bad_values_fail_with_the_variable_named(var, value):
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


def test_password_is_never_shown():
    s = Settings.from_env({"CLICKHOUSE_PASSWORD": "s3cret"})
    assert s.clickhouse_password == "s3cret"
    assert "s3cret" not in repr(s)
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CLICKHOUSE_URL": "http://u:s3cret@h:8123"})
    assert "s3cret" not in str(err.value)
    assert redact_url("http://u:pw@h:8123/x") == "http://h:8123/x"


def test_clock_skew_defaults_within_the_lateness_and_may_not_exceed_it():
    assert Settings.from_env({"ALLOWED_LATENESS_SECONDS": "5"}).max_clock_skew_ms == 5_000
    assert Settings.from_env({"MAX_CLOCK_SKEW_SECONDS": "120"}).max_clock_skew_ms == 120_000
    with pytest.raises(SettingsError, match="MAX_CLOCK_SKEW_SECONDS must be at most ALLOWED_LATENESS"):
        Settings.from_env({"MAX_CLOCK_SKEW_SECONDS": "300"})


def test_idle_partition_seconds_is_read_and_checked():
    assert Settings.from_env({"IDLE_PARTITION_SECONDS": "90"}).idle_partition_ms == 90_000
    with pytest.raises(SettingsError, match="IDLE_PARTITION_SECONDS"):
        Settings.from_env({"IDLE_PARTITION_SECONDS": "0"})

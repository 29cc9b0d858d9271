"""The campaign registry file and its loader (pure: no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pipeline.serving.registry import DEFAULT_REGISTRY, RegistryError, load_campaigns
from pipeline.settings import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUIRED = {"抢新年货节", "女王节", "618", "818 新潮好物节", "双11"}


def test_registry_ships_every_campaign_for_2026_and_2027_plus_demo():
    campaigns = {c.id: c for c in load_campaigns(Settings(), DEFAULT_REGISTRY)}
    for year in (2026, 2027):
        names = {
            c.name
            for c in campaigns.values()
            if c.starts_at.astimezone(SHANGHAI).year == year and c.id != "demo"
        }
        assert names >= REQUIRED, year
    assert all(c.name_en and c.timezone == "Asia/Shanghai" for c in campaigns.values())
    d11 = campaigns["double11-2026"]
    # Local midnight in China Standard Time is 16:00 UTC the day before.
    assert d11.starts_at == datetime(2026, 10, 19, 16, tzinfo=UTC)
    assert d11.ends_at == datetime(2026, 11, 11, 16, tzinfo=UTC)
    assert campaigns["618-2027"].ends_at == datetime(2027, 6, 18, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 11, 23, 4, 0, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC)),
        # 17:00 UTC is already the next day in Shanghai.
        (datetime(2026, 11, 23, 17, 0, tzinfo=UTC), datetime(2026, 11, 23, 16, tzinfo=UTC)),
    ],
)
def test_demo_covers_the_current_day_in_shanghai(now, start):
    demo = next(c for c in load_campaigns(Settings(), DEFAULT_REGISTRY, now=now) if c.id == "demo")
    assert demo.starts_at == start and (demo.ends_at - demo.starts_at).total_seconds() == 86_400
    assert demo.status(int(now.timestamp() * 1000)) == "live"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[campaign.x]\nname = "a"\nstarts = 2026-01-02T00:00:00\nends = 2026-01-01T00:00:00\n', "before"),
        (
            '[campaign.x]\nname = "a"\nstarts = 2026-01-01T00:30:00\nends = 2026-01-02T00:00:00\n',
            "whole hours",
        ),
        ('[campaign.X_1]\nname = "a"\nstarts = 2026-01-01\nends = 2026-01-02\n', "id must be"),
        (
            '[campaign.x]\nname = "a"\ntimezone = "Mars/Base"\nstarts = 2026-01-01\nends = 2026-01-02\n',
            "timezone",
        ),
        ('[campaign.x]\nname = "a"\nstarts = 2026-01-01T00:00:00+08:00\nends = 2026-01-02\n', "offset"),
        ("[campaign.x]\nstarts = 2026-01-01\nends = 2026-01-02\n", "name"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_registry_entries_are_refused_with_the_reason(tmp_path, body, message):
    path = tmp_path / "campaigns.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(RegistryError, match=message):
        load_campaigns(Settings(), path)

"""The dimension registry (creators, MCNs, merchants, categories): file, loader, demo cast, ClickHouse."""

from __future__ import annotations

import uuid

import pytest

from pipeline.clickhouse import migrations
from pipeline.clickhouse.clients import Profile, make_client
from pipeline.serving.dimensions import (
    DEFAULT_DIMENSIONS,
    DimensionError,
    load_dimensions,
    sync_dimensions,
)
from pipeline.serving.registry import RegistryError
from pipeline.settings import Settings
from pipeline.traffic.dimensions import render
from pipeline.traffic.generator import TrafficConfig, TrafficModel


def test_shipped_registry_is_the_generated_one_and_names_the_demo_cast():
    assert (
        DEFAULT_DIMENSIONS.read_text(encoding="utf-8") == render()
    )  # regenerate: python -m pipeline.traffic.dimensions
    dims = load_dimensions()
    assert {c.kind for c in dims.creators.values()} == {"creator", "celebrity", "brand"}
    assert all(c.nickname and c.avatar_url.startswith("https://") for c in dims.creators.values())
    assert {m.region for m in dims.mcns.values()} >= {"华东", "华南", "华北"}
    # the demo's default traffic (500 rooms, 150 creators): every id its events carry has a name, and
    # the events' mcn_id agrees with the registry's agency of their creator
    model = TrafficModel(TrafficConfig(rooms=500, creators=150, seed=7, invalid_share=0.0))
    seen = {"creator": set(), "mcn": set(), "merchant": set(), "category": set()}
    for msg in model.messages(20_000):
        for ev in msg.events:
            creator = dims.creators[ev["creator_id"]]
            seen["creator"].add(ev["creator_id"])
            assert ev.get("mcn_id", 0) == creator.mcn
            if "merchant_id" in ev:
                seen["merchant"].add(ev["merchant_id"])
                if creator.kind == "brand":
                    assert ev["merchant_id"] == creator.merchant  # 商家自播 sells its own shop
            if "category" in ev:
                seen["category"].add(ev["category"])
            if ev.get("mcn_id"):
                seen["mcn"].add(ev["mcn_id"])
    assert seen["merchant"] <= set(dims.merchants) and seen["category"] <= set(dims.categories)
    assert seen["mcn"] <= set(dims.mcns) and len(seen["mcn"]) > 5
    assert any(dims.creators[c].kind == "brand" for c in seen["creator"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[creator.abc]\nnickname = "a"\n', "id must be"),
        ('[creator.1]\nkind = "creator"\n', "nickname"),
        ('[creator.1]\nnickname = "a"\nkind = "star"\n', "kind"),
        ('[creator.1]\nnickname = "a"\nmcn = "x"\n', "mcn"),
        ('[creator.1]\nnickname = "a"\nsource = "tv"\n', "source"),
        ('[creator.1]\nnickname = "a"\nfans = 3\n', "unknown keys"),
        ('[mcn.5]\nname = "a"\nsigned = "2024"\n', "signed"),
        ('[merchant.5]\nbrand = "b"\n', "name"),
        ('[shop.5]\nname = "b"\n', "unknown sections"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(tmp_path, body, message):
    path = tmp_path / "dimensions.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DimensionError, match=message) as info:
        load_dimensions(path)
    assert isinstance(info.value, RegistryError)  # the worker stops at start on it, like on campaigns


@pytest.mark.clickhouse
def test_sync_is_an_upsert_by_id(clickhouse_server, tmp_path):
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(clickhouse_url=clickhouse_server.url, clickhouse_database=db)
    client = make_client(settings, Profile.MIGRATE)
    try:
        migrations.migrate(client, db, 30)
        path = tmp_path / "d.toml"
        first = '[creator.7]\nnickname = "旧名"\nmcn = 3\n[mcn.3]\nname = "甲"\nsigned = 2026-01-02\n'
        path.write_text(
            first + '[merchant.4]\nname = "店"\n[category."美妆个护"]\nname = "美妆"\n', encoding="utf-8"
        )
        assert sync_dimensions(client, settings, load_dimensions(path)) == {
            "creators": 1, "mcns": 1, "merchants": 1, "categories": 1}  # fmt: skip
        path.write_text('[creator.7]\nnickname = "新名"\nkind = "celebrity"\n[creator.8]\nnickname = "b"\n',
                        encoding="utf-8")  # fmt: skip
        sync_dimensions(client, settings, load_dimensions(path))
        rows = client.query(
            f"SELECT creator_id, nickname, kind, mcn_id FROM {db}.creators ORDER BY 1"
        ).result_rows
        assert rows == [(7, "新名", "celebrity", 0), (8, "b", "creator", 0)]
        assert client.query(f"SELECT name, toString(signed_on) FROM {db}.mcns").result_rows == [
            ("甲", "2026-01-02")
        ]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
        client.close()

"""The live page in headless Chromium (Debian's package) against a real worker (markers kafka, clickhouse).

Known window rows and events go straight into ClickHouse for the `demo` campaign (today); the worker
subprocess serves the page and API behind WEB_AUTH_TOKEN; the browser logs in through the form. The
test checks the top rows and the total the page shows, adds a window that changes the leader, sees the
update arrive without a reload, and saves a screenshot to test-artifacts/leaderboard.png. A second test
feeds named creators (a small dimension registry) and their events, then walks the new boards
(celebrities, agencies by track, merchants, categories, 全域 sources), the drill-down of a room and a
creator, and the wall screen (?screen=1) through its 破亿 moment, saving a screenshot of each under
test-artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_boards import feed

from pipeline.clickhouse.clients import Profile, make_client
from pipeline.local.process import find_free_port
from pipeline.rows import CREATOR_WINDOW_COLUMNS, ROOM_WINDOW_COLUMNS
from pipeline.serving.dimensions import load_dimensions, sync_dimensions
from pipeline.serving.registry import load_campaigns, sync_campaigns
from pipeline.settings import PROJECT_ROOT, Settings

CHROMIUM = "/usr/bin/chromium"
TOKEN = "page-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.clickhouse,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")


def login(page, base: str, path: str) -> None:
    """With WEB_AUTH_TOKEN set, the browser logs in once through the form; the cookie does the rest."""
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}")


def put_windows(client, settings, minute_s, rows):
    """rows: (creator_id, gmv_fen, orders); each creator has one room = creator * 10."""
    db = settings.clickhouse_database
    creator_rows = [
        (minute_s, minute_s + 60, cid, 100, 50, 0, 0, orders, orders, gmv, 0, 0) for cid, gmv, orders in rows
    ]
    room_rows = [
        (minute_s, minute_s + 60, cid * 10, cid, 100, 50, 0, 0, orders, orders, gmv, 0, 0)
        for cid, gmv, orders in rows
    ]
    client.insert(f"{db}.creator_windows", creator_rows, column_names=list(CREATOR_WINDOW_COLUMNS))
    client.insert(f"{db}.room_windows", room_rows, column_names=list(ROOM_WINDOW_COLUMNS))


@contextlib.contextmanager
def browser_page():
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser.new_page(viewport={"width": 1920, "height": 1080})
        finally:
            browser.close()


@pytest.fixture
def worker(settings_env, tmp_path):
    """(base URL, settings, migrate client) of a running worker on a fresh database with the registry."""
    env = {
        **os.environ,
        **settings_env,
        "CLICKHOUSE_DATABASE": f"t_{uuid.uuid4().hex[:12]}",
        "APP_ID": f"page-{uuid.uuid4().hex[:8]}",
        "WEB_PORT": str(find_free_port()),
        "LIVECOMMERCE_LOCAL_DIR": str(tmp_path),
        "TOPIC_PARTITIONS": "1",
        "WEB_AUTH_TOKEN": TOKEN,
    }
    settings = Settings.from_env(env)
    migrate = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    client = make_client(settings, Profile.MIGRATE)
    sync_campaigns(client, settings, load_campaigns(settings))
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{settings.web_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            try:
                request = urllib.request.Request(f"{base}/api/campaigns", headers=BEARER)
                with urllib.request.urlopen(request, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "worker web server did not answer"
            time.sleep(0.5)
        yield base, settings, client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database} SYNC")
        client.close()
        log.close()


def test_page_shows_the_board_and_its_updates(worker):
    base, settings, client = worker
    minute = int(time.time()) // 60 * 60 - 120
    # 2,345.67万 CNY for creator 3, 1.5亿 for creator 1, 980万 for creator 2
    put_windows(
        client, settings, minute, [(1, 15_000_000_000, 900), (2, 980_000_000, 40), (3, 234_567_000, 12)]
    )
    # Boards are read at their cut-off (newest window end minus the 120 s lateness): a later, empty
    # window of another creator moves it past the test's minutes, as the stream's next minutes would.
    put_windows(client, settings, minute + 180, [(99, 0, 0)])
    with browser_page() as page:
        if True:
            page.goto(f"{base}/?campaign=demo")
            login(page, base, "/?campaign=demo")
            page.wait_for_selector("#board tbody tr[data-id]", timeout=20_000)
            ids = page.eval_on_selector_all("#board tbody tr[data-id]", "rows => rows.map(r => r.dataset.id)")
            assert ids == ["1", "2", "3"]
            first = page.inner_text("#board tbody tr:nth-child(1)")
            assert "¥1.50亿" in first and "900" in first
            assert "¥980.00万" in page.inner_text("#board tbody tr:nth-child(2)")
            assert page.get_attribute("#total-gmv", "data-fen") == str(
                15_000_000_000 + 980_000_000 + 234_567_000
            )
            assert page.inner_text("#total-gmv") == "¥1.62亿"
            assert page.inner_text("#conn") == "实时 Live"
            # A new minute: creator 3 sells 2亿 and takes the lead; the page updates itself within seconds.
            put_windows(client, settings, minute + 60, [(3, 20_000_000_000, 1_000)])
            page.wait_for_function(
                "document.querySelector('#board tbody tr[data-id]').dataset.id === '3'", timeout=10_000
            )
            assert "▲2" in page.inner_text("#board tbody tr:nth-child(1)")
            assert page.inner_text("#total-gmv") == "¥3.62亿"
            page.click("button[data-by=room]")
            page.wait_for_function(
                "document.querySelector('#board tbody tr[data-id]').dataset.id === '30'", timeout=10_000
            )
            page.click("button[data-by=creator]")
            page.wait_for_function(
                "document.querySelector('#board tbody tr[data-id]').dataset.id === '3'", timeout=10_000
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)


RECENT = (datetime.now(UTC) - timedelta(days=40)).date()
REGISTRY = f"""
[creator.1]
nickname = "甲姐好物分享"
mcn = 11
[creator.2]
nickname = "乙明星"
kind = "celebrity"
mcn = 12
[creator.3]
nickname = "花西子官方旗舰店直播间"
kind = "brand"
merchant = 501
category = "美妆个护"
source = "search"
[mcn.11]
name = "无忧传媒"
region = "华东"
signed = 2019-06-18
[mcn.12]
name = "星河新锐"
region = "华南"
signed = {RECENT.isoformat()}
[merchant.501]
name = "花西子官方旗舰店"
brand = "花西子"
[merchant.502]
name = "三只松鼠旗舰店"
brand = "三只松鼠"
[category."美妆个护"]
name = "美妆个护"
name_en = "Beauty"
[category."食品饮料"]
name = "食品饮料"
name_en = "Food"
"""


def named_events():
    """(minute, type, room, creator, user, extra): three creators with views, clicks, orders; GMV
    6,000万 (celebrity), 1,000万 and 300万 CNY; a view at minute 7 moves the cut-off past minute 2."""
    events = []
    for i in range(12):
        room, creator = (21, 2) if i < 6 else (11, 1) if i < 10 else (31, 3)
        source = ("live_feed", "short_video", "search", "live_feed", "follow", "mall")[i % 6]
        events.append((i % 3, "view", room, creator, 1000 + i, {"source": source}))
        if i % 2 == 0:
            events.append(
                (
                    i % 3,
                    "click",
                    room,
                    creator,
                    1000 + i,
                    {"product_id": 7, "merchant_id": 502, "source": source},
                )
            )
    orders = [
        (21, 2, 1000, 2_000_000_000, "live_feed"),
        (21, 2, 1002, 2_000_000_000, "search"),
        (21, 2, 1004, 2_000_000_000, "short_video"),
        (11, 1, 1006, 500_000_000, "live_feed"),
        (11, 1, 1008, 500_000_000, "follow"),
        (31, 3, 1010, 300_000_000, None),
    ]
    for j, (room, creator, user, amount, source) in enumerate(orders):
        extra = {"amount_fen": amount, "category": "美妆个护" if creator != 1 else "食品饮料"}
        extra.update({"merchant_id": 502} if creator != 3 else {})
        extra.update({"source": source} if source else {})
        events.append((1 + j % 2, "order", room, creator, user, extra))
    events.append((7, "view", 11, 1, 1999, {"source": "live_feed"}))
    return events


def test_named_boards_drill_down_and_wall_screen(worker):
    base, settings, client = worker
    path = ARTIFACTS / "test-dimensions.toml"
    ARTIFACTS.mkdir(exist_ok=True)
    path.write_text(REGISTRY, encoding="utf-8")
    sync_dimensions(client, settings, load_dimensions(path))
    path.unlink()
    t0 = int(time.time()) // 60 * 60 - 600
    feed(client, settings, named_events(), t0=t0)
    rows = "#board tbody tr[data-id]"
    ids = "els => els.map(e => e.dataset.id)"
    with browser_page() as page:
        page.goto(f"{base}/?campaign=demo")
        login(page, base, "/?campaign=demo")
        page.wait_for_selector(rows, timeout=20_000)
        assert page.eval_on_selector_all(rows, ids) == ["2", "1", "3"]
        assert "乙明星" in page.inner_text(f"{rows}:nth-child(1)") and "明星" in page.inner_text(
            "#board tbody"
        )
        assert "¥6,000.00万" in page.inner_text(f"{rows}:nth-child(1)")
        assert page.inner_text("#total-gmv") == "¥7,300.00万"
        page.screenshot(path=str(ARTIFACTS / "board-creators.png"))
        for tab, expected, first_name in [
            ("celebrity", ["2"], "乙明星"),
            ("brand", ["3"], "花西子官方旗舰店直播间"),
            ("mcn", ["12", "11"], "星河新锐"),
            ("merchant", ["502", "501"], "三只松鼠旗舰店"),
            ("category", ["美妆个护", "食品饮料"], "美妆个护"),
        ]:
            page.click(f"button[data-by={tab}]")
            page.wait_for_function(
                f"[...document.querySelectorAll('{rows}')].map(e => e.dataset.id).join() === "
                f"'{','.join(expected)}'",
                timeout=10_000,
            )
            assert first_name in page.inner_text(f"{rows}:nth-child(1)")
            if tab == "mcn":
                page.screenshot(path=str(ARTIFACTS / "board-mcn.png"))
                page.select_option("#track", "region:华东")
                page.wait_for_function(
                    f"[...document.querySelectorAll('{rows}')].map(e => e.dataset.id).join() === '11'",
                    timeout=10_000,
                )
                page.select_option("#track", "new")
                page.wait_for_function(
                    f"[...document.querySelectorAll('{rows}')].map(e => e.dataset.id).join() === '12'",
                    timeout=10_000,
                )
        page.click("button[data-by=source]")
        page.wait_for_function(f"document.querySelector('{rows}').dataset.id === 'live_feed'", timeout=10_000)
        # 全域: live feed 2,500万 of 7,300万; the stacked bar shows the split
        assert "34.25%" in page.inner_text(f"{rows}:nth-child(1)")
        assert page.is_visible("#mix .stack")
        page.screenshot(path=str(ARTIFACTS / "board-sources.png"))

        page.goto(f"{base}/?campaign=demo&room=21")
        page.wait_for_function(
            "document.querySelector('#drill-name').textContent === '乙明星的直播间'", timeout=20_000
        )
        page.wait_for_selector("#curve-gmv polyline", timeout=10_000)
        funnel = page.inner_text("#funnel")
        assert (
            "观看人数 Viewers 6" in funnel
            and "点击人数 Clickers 3" in funnel
            and "成交人数 Buyers 3" in funnel
        )
        assert "点击-成交 100.00%" in funnel and "观看-成交 50.00%" in funnel
        assert "¥6,000.00万" in page.inner_text("#drill-kpis") and "直播推荐" in page.inner_text(
            "#drill-sources"
        )
        assert not page.is_visible("#board-section")
        page.screenshot(path=str(ARTIFACTS / "drilldown-room.png"))
        page.goto(f"{base}/?campaign=demo&creator=3")
        page.wait_for_function(
            "document.querySelector('#drill-name').textContent === '花西子官方旗舰店直播间'", timeout=20_000
        )
        # the brand's order carries no source: the registry's (search) is used
        assert "搜索 Search\t¥300.00万\t100.00%" in page.inner_text("#drill-sources")
        page.screenshot(path=str(ARTIFACTS / "drilldown-creator.png"))

        page.goto(f"{base}/?campaign=demo&screen=1")
        page.wait_for_function(
            "document.querySelector('#screen-gmv').textContent === '¥7,300.00万'", timeout=20_000
        )
        assert page.eval_on_selector_all("#screen-table tr[data-id]", ids)[:1] == ["2"]
        html, body = "document.documentElement.scrollHeight", "document.body.scrollHeight"
        no_scroll = f"Math.max({html}, {body}) <= innerHeight"
        assert page.evaluate(no_scroll)
        assert not page.is_visible("header .tabs") and page.is_hidden("#celebrate")
        page.screenshot(path=str(ARTIFACTS / "wall-screen.png"))
        # the boards rotate: another board title within a rotation period
        title = page.inner_text("#screen-board-title")
        page.wait_for_function(
            f"document.querySelector('#screen-board-title').textContent !== {title!r}", timeout=15_000
        )
        # 破亿: the celebrity sells 3,000万 more; the total crosses 1亿 live and the screen celebrates
        feed(
            client,
            settings,
            [
                (3, "order", 21, 2, 1003, {"amount_fen": 3_000_000_000, "source": "live_feed"}),
                (9, "view", 11, 1, 1998, {}),
            ],
            t0=t0,
        )
        page.wait_for_selector("#celebrate:not([hidden])", timeout=15_000)
        assert "破亿" in page.inner_text("#celebrate-text")
        page.wait_for_function(
            "document.querySelector('#screen-gmv').textContent === '¥1.03亿'", timeout=15_000
        )
        assert page.evaluate(no_scroll)
        page.screenshot(path=str(ARTIFACTS / "wall-screen-poyi.png"))

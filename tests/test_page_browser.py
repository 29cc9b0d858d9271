"""The live page in headless Chromium (Debian's package) against a real worker (markers kafka, clickhouse).

Known window rows and events go straight into ClickHouse for the `demo` campaign (today); the worker
subprocess serves the page and API behind WEB_AUTH_TOKEN; the browser logs in through the form. The test
checks the top rows and the total the page shows, adds a window that changes the leader, sees the update
arrive without a reload, and saves a screenshot to test-artifacts/leaderboard.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipeline.clickhouse.clients import Profile, make_client
from pipeline.local.process import find_free_port
from pipeline.serving.registry import load_campaigns, sync_campaigns
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.sink.tables import CREATOR_WINDOW_COLUMNS, ROOM_WINDOW_COLUMNS

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.clickhouse,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")
TOKEN = "page-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def put_windows(client, settings, minute_s, rows):
    """rows: (creator_id, gmv_fen, orders); each creator has one room = creator * 10."""
    db = settings.clickhouse_database
    creator_rows = [
        (minute_s, minute_s + 60, cid, 100, 50, 0, 0, orders, orders, gmv, 0, 0) for cid, gmv, orders in rows
    ]
    room_rows = [(minute_s, minute_s + 60, cid * 10, cid, 100, 50, 0, 0, orders, orders, gmv, 0, 0)
                 for cid, gmv, orders in rows]  # fmt: skip
    client.insert(f"{db}.creator_windows", creator_rows, column_names=list(CREATOR_WINDOW_COLUMNS))
    client.insert(f"{db}.room_windows", room_rows, column_names=list(ROOM_WINDOW_COLUMNS))


@pytest.fixture
def worker(settings_env, tmp_path):
    """(base URL, settings, migrate client) of a running worker on a fresh database with the registry."""
    env = {**os.environ, **settings_env, "CLICKHOUSE_DATABASE": f"t_{uuid.uuid4().hex[:12]}",
           "APP_ID": f"page-{uuid.uuid4().hex[:8]}", "WEB_PORT": str(find_free_port()),
           "LIVECOMMERCE_LOCAL_DIR": str(tmp_path), "TOPIC_PARTITIONS": "1",
           "WEB_AUTH_TOKEN": TOKEN}  # fmt: skip
    settings = Settings.from_env(env)
    migrate = subprocess.run([sys.executable, "-m", "pipeline.cli", "migrate"], env=env, capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
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
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.skip("no chromium")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{base}/?campaign=demo")
            # With WEB_AUTH_TOKEN set, the browser logs in once through the form; the cookie does the rest.
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/?campaign=demo")
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
        finally:
            browser.close()

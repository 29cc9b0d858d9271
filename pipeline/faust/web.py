"""The leaderboard page and the JSON API mounted on the worker's web server (Faust views, aiohttp
underneath): the Faust side of `pipeline.serving`, which itself imports no Faust.

Contract: `register_routes(app, settings, watermark_ms=None)` adds, read-only (GET/HEAD):
  /                                               the live page (static/index.html)
  /static/{name}, /static/vendor/{lib}/{name}     the page's files (a fixed list, nothing else on disk)
  /api/campaigns                                  every campaign with its status
  /api/campaigns/{id}/leaderboard?by=&limit=      the ranked board
  /api/campaigns/{id}/rooms/{room_id}             per-window series of one room (?minutes=)
  /api/campaigns/{id}/creators/{creator_id}       per-window series of one creator (?minutes=)
  /api/campaigns/{id}/rooms/{room_id}/summary     drill-down: funnel and source mix of one room
  /api/campaigns/{id}/creators/{creator_id}/summary   the same for one creator
  /api/campaigns/{id}/gmv?minutes=                the campaign's GMV per window
  /api/campaigns/{id}/milestones                  破千万 / 破亿 moments, newest first
Call it inside `create_app` before the worker starts (routes cannot be added to a running server).
It also removes Faust's built-in pages (`/router/...`, `/table/...`, and `/graph`, `/stats/`,
`/assignment/`, `/performance/` where enabled): they serve cluster topology and the state table's
contents (user and event ids) to anyone who can reach the port, whatever `APP_WEB_*_ENABLED` says.
"""

from __future__ import annotations

from collections.abc import Callable

import faust
from faust.web.base import BlueprintManager

from pipeline.serving.api import ServingApi
from pipeline.serving.pages import CONTENT_TYPES, NO_STORE, static_files
from pipeline.settings import Settings


def register_routes(
    app: faust.App, settings: Settings, watermark_ms: Callable[[str], int | None] | None = None
) -> ServingApi:
    api = ServingApi(settings, watermark_ms)
    files = static_files()
    # Faust applies these when the server starts; an empty manager registers none of its own pages.
    app.web.blueprints = BlueprintManager()

    def serve_file(web, name: str):
        path = files.get(name)
        if path is None:
            return web.json({"error": "not found"}, status=404)
        headers = {"Content-Type": CONTENT_TYPES[path.suffix], "Cache-Control": "no-cache"}
        return web.bytes(path.read_bytes(), headers=headers)

    async def respond(web, coro):
        status, body = await api.handle(coro)
        return web.json(body, status=status, headers=dict(NO_STORE))

    @app.page("/", name="leaderboard_page")
    async def page(web, request):
        return serve_file(web, "index.html")

    @app.page("/static/{name}", name="leaderboard_static")
    async def static(web, request, name):
        return serve_file(web, name)

    @app.page("/static/vendor/{lib}/{name}", name="leaderboard_vendor")
    async def vendor(web, request, lib, name):
        return serve_file(web, f"vendor/{lib}/{name}")

    @app.page("/api/campaigns", name="api_campaigns")
    async def campaigns(web, request):
        return await respond(web, api.campaigns())

    @app.page("/api/campaigns/{campaign_id}/leaderboard", name="api_leaderboard")
    async def leaderboard(web, request, campaign_id):
        return await respond(web, api.leaderboard(campaign_id, request.query))

    @app.page("/api/campaigns/{campaign_id}/rooms/{key_id}", name="api_room_series")
    async def room_series(web, request, campaign_id, key_id):
        return await respond(web, api.key_series(campaign_id, "rooms", key_id, request.query))

    @app.page("/api/campaigns/{campaign_id}/creators/{key_id}", name="api_creator_series")
    async def creator_series(web, request, campaign_id, key_id):
        return await respond(web, api.key_series(campaign_id, "creators", key_id, request.query))

    @app.page("/api/campaigns/{campaign_id}/rooms/{key_id}/summary", name="api_room_summary")
    async def room_summary(web, request, campaign_id, key_id):
        return await respond(web, api.key_summary(campaign_id, "rooms", key_id))

    @app.page("/api/campaigns/{campaign_id}/creators/{key_id}/summary", name="api_creator_summary")
    async def creator_summary(web, request, campaign_id, key_id):
        return await respond(web, api.key_summary(campaign_id, "creators", key_id))

    @app.page("/api/campaigns/{campaign_id}/gmv", name="api_gmv_series")
    async def gmv(web, request, campaign_id):
        return await respond(web, api.gmv_series(campaign_id, request.query))

    @app.page("/api/campaigns/{campaign_id}/milestones", name="api_milestones")
    async def milestones(web, request, campaign_id):
        return await respond(web, api.milestones(campaign_id, request.query))

    return api

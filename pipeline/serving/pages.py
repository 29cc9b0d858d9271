"""The page's files as the worker serves them: which files, with which content types and caching.

Contract: `static_files()` -> URL path under /static/ -> file, for every servable file shipped in the
package (nothing else on disk is reachable); `CONTENT_TYPES` by suffix; `NO_STORE` for API answers.
Mounted on the worker's web server by `pipeline.faust.web.register_routes`.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
# The page polls every 2 s and must see fresh data: no caching of API answers.
NO_STORE = {"Cache-Control": "no-store"}


def static_files() -> dict[str, Path]:
    """URL path under /static/ -> file, for every servable file shipped in the package."""
    return {
        path.relative_to(STATIC_DIR).as_posix(): path
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and path.suffix in CONTENT_TYPES
    }

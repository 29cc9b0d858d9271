"""Faust, mode and aiokafka are imported only where the package layout says (see `pipeline.faust`):
the stages, the runtime, the checkpoint pipeline and the sink must stay plain code."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[3] / "pipeline"  # tests/unit/faust/ -> the repository
CONFINED = ("faust", "mode", "aiokafka")
# Everything in pipeline/faust/ may import them. Outside it, each module that does is listed with the
# packages it may import and why; a new one fails the test until it moves into pipeline/faust/ or is
# listed here.
ALLOWED = {
    "app.py": ({"faust"}, "the wiring: topics, table, agents, timers, pages (public API)"),
    "collector/producer.py": ({"aiokafka"}, "the collector's plain producer client"),
    "traffic/producer.py": ({"aiokafka"}, "the traffic generator's plain producer client"),
    "local/kafka.py": ({"aiokafka"}, "the local broker's admin client (public API)"),
    "topics.py": ({"aiokafka"}, "the admin client that creates topics (public API)"),
    "kafka_options.py": ({"aiokafka"}, "aiokafka's public TLS helper for the plain clients"),
    "serving/health.py": ({"aiokafka"}, "the admin client of the health check (public API)"),
}


def imported_packages(path: Path) -> set[str]:
    """The confined packages `path` imports, anywhere in the module (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(top for top in (name.split(".")[0] for name in names) if top in CONFINED)
    return found


def test_faust_mode_and_aiokafka_are_imported_only_in_pipeline_faust_and_the_allowed_modules():
    offenders = {}
    for path in sorted(PIPELINE.rglob("*.py")):
        module = path.relative_to(PIPELINE).as_posix()
        if module.startswith("faust/"):
            continue
        extra = imported_packages(path) - ALLOWED.get(module, (set(), ""))[0]
        if extra:
            offenders[module] = sorted(extra)
    assert offenders == {}, f"move these imports into pipeline/faust/ (or allow them here): {offenders}"


def test_the_allow_list_has_no_stale_entries():
    stale = {m for m, (allowed, _) in ALLOWED.items() if not imported_packages(PIPELINE / m) & allowed}
    assert stale == set()


def test_the_guard_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from faust.streams import x\n    import aiokafka.admin\nimport pipeline.faust\n"
    )
    assert imported_packages(module) == {"faust", "aiokafka"}

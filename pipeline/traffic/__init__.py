"""Synthetic live-room traffic: what `livecommerce generate`, `phones` and `demo` send, and what the
tests and the benchmarks in `load_tests/` drive the pipeline with.

`generator` is the pure, seeded model (`TrafficModel`) built on `population` (the cast) and `invalid`
(bad records), which share `message.Message`; `producer` sends its messages to Kafka at a rate,
`phones` regroups them into uploads through the collector, `cli` is the `generate` command and
`dimensions` writes the demo registry (`deploy/dimensions.toml`) for the cast. Nothing here imports
`load_tests`, and the modules import each other without cycles (`tests/unit/traffic/test_traffic_imports.py`).
"""

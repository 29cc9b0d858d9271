"""Live-commerce metrics pipeline: Kafka -> validate/de-duplicate -> event-time windows -> ClickHouse.

Data flows one way through the sub-packages, in this order:
`events` (contract, decode, de-duplicate) -> `windows` (watermarks, window state) -> `sink` (batching
writer) -> `clickhouse` (migrations, client profiles) -> `serving` (API, page). `app` wires them to
Faust; `local` starts the real Kafka and ClickHouse on this machine; `cli` is the `livecommerce` command.
"""

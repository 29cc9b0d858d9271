"""Event contract v1 and the pure ingestion stages (no Kafka here).

`contract` (rules, limits, reason codes, the per-event check) -> `decode` (message value -> valid events and
rejections) -> `deadletter` (rejection -> envelope bytes) ; `dedup` (event_id de-duplication in event time).
The contract is documented, with JSON Schemas and examples, in schemas/events/.
"""

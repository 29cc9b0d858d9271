-- raw_events: every validated event the stream accepted, kept for drill-down and reconciliation.
--
-- Engine: ReplacingMergeTree. After a crash the stream replays events from the last committed offset,
--   so the same event can be inserted twice; rows with the same sorting key (room, type, ts, event_id)
--   collapse into one at merge time. Readers that need exact counts before merges use FINAL (reconcile
--   does; FINAL is cheap here because replays stay within one day's partition). An exact retry of one
--   insert is dropped at once by insert_deduplication_token (non_replicated_deduplication_window).
-- PARTITION BY day: the TTL drops whole day partitions (ttl_only_drop_parts) instead of rewriting parts,
--   and drill-downs always filter on a time range.
-- ORDER BY (room_id, type, ts, event_id): drill-downs ask "what happened in this room, of this type, in
--   this time range"; event_id comes last only to make the replacing key unique per event.
-- Ids (room, creator, user, product, merchant, mcn) are UInt64: the event contract makes them integers
--   1..2^63-1, so 0 is free to mean "absent" for the optional ones (product_id of a view, merchant_id,
--   mcn_id). Integers sort, compare and hash faster than strings and take 8 bytes.
-- TTL: the days placeholder is rendered by `livecommerce migrate` from the RAW_EVENTS_TTL_DAYS setting
--   (default 30); migrate also re-applies it when the setting changes (see README).
-- cluster: shard_by cityHash64(room_id)
CREATE TABLE IF NOT EXISTS {db}.raw_events
(
    event_id String,
    type LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    room_id UInt64,
    creator_id UInt64,
    user_id UInt64,
    product_id UInt64 DEFAULT 0,
    order_id String DEFAULT '',
    amount_fen Int64 DEFAULT 0,
    quantity UInt32 DEFAULT 0,
    merchant_id UInt64 DEFAULT 0,
    mcn_id UInt64 DEFAULT 0,
    category LowCardinality(String) DEFAULT '',
    source LowCardinality(String) DEFAULT '',
    kafka_topic LowCardinality(String) DEFAULT '',
    kafka_partition UInt32 DEFAULT 0,
    kafka_offset UInt64 DEFAULT 0,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (room_id, type, ts, event_id)
TTL toDateTime(ts) + INTERVAL {raw_events_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

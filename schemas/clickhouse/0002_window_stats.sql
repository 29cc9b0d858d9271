-- Window aggregates written by the stream: one logical row per (window_start, key), kept as the
-- per-column MAXIMUM of every row written for that key.
--
-- Why maximum, not "latest version": every metric of a window only grows while the window is open, and
-- the stream writes ABSOLUTE current values (about once a second while a window changes, then a final
-- time), never deltas. The room stage is split by input topic, so one room row has THREE writers: the
-- views partition writes views/viewers (its other metrics are 0), the clicks partition clicks/clickers,
-- the orders partition orders/buyers/gmv_fen/refunds/refund_fen. Keeping each column's maximum
-- assembles the full row from the three writers, makes a re-written row harmless (idempotent) and does
-- not depend on insert or merge order. No version column is needed (none would be comparable across
-- writers anyway).
-- Engine: AggregatingMergeTree with SimpleAggregateFunction(max, ...) on every non-key column: merges
--   collapse the rows of a key into their maxima. Until parts merge, a key has several rows: BI users
--   read the *_window_stats views below, which GROUP BY the key with max(), never these tables.
-- Types: ids UInt64 (event contract: integers 1..2^63-1); counts UInt64; gmv_fen / refund_fen stay Int64
--   (amounts are positive, and signed keeps `gmv_fen - refund_fen` from wrapping around).
-- ORDER BY (window_start, key): the sorting key IS the aggregation key (one row per window and key after
--   merges), and leaderboards read a time range first, then group by room or creator.
-- PARTITION BY day: old days can be dropped as a unit; merges stay within one day.
-- updated_at is set by ClickHouse at insert; its maximum is the time the row was last refreshed.
-- cluster: shard_by cityHash64(room_id)
CREATE TABLE IF NOT EXISTS {db}.room_windows
(
    window_start DateTime('UTC'),
    window_end SimpleAggregateFunction(max, DateTime('UTC')),
    room_id UInt64,
    creator_id SimpleAggregateFunction(max, UInt64),
    views SimpleAggregateFunction(max, UInt64),
    viewers SimpleAggregateFunction(max, UInt64),
    clicks SimpleAggregateFunction(max, UInt64),
    clickers SimpleAggregateFunction(max, UInt64),
    orders SimpleAggregateFunction(max, UInt64),
    buyers SimpleAggregateFunction(max, UInt64),
    gmv_fen SimpleAggregateFunction(max, Int64),
    refunds SimpleAggregateFunction(max, UInt64),
    refund_fen SimpleAggregateFunction(max, Int64),
    updated_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')) DEFAULT now64(3)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(window_start)
ORDER BY (window_start, room_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Same contract per creator (all of the creator's rooms in the window); see room_windows for the why.
-- cluster: shard_by cityHash64(creator_id)
CREATE TABLE IF NOT EXISTS {db}.creator_windows
(
    window_start DateTime('UTC'),
    window_end SimpleAggregateFunction(max, DateTime('UTC')),
    creator_id UInt64,
    views SimpleAggregateFunction(max, UInt64),
    viewers SimpleAggregateFunction(max, UInt64),
    clicks SimpleAggregateFunction(max, UInt64),
    clickers SimpleAggregateFunction(max, UInt64),
    orders SimpleAggregateFunction(max, UInt64),
    buyers SimpleAggregateFunction(max, UInt64),
    gmv_fen SimpleAggregateFunction(max, Int64),
    refunds SimpleAggregateFunction(max, UInt64),
    refund_fen SimpleAggregateFunction(max, Int64),
    updated_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')) DEFAULT now64(3)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(window_start)
ORDER BY (window_start, creator_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Public contract for BI: exactly one row per (window_start, room_id), each column the maximum of what
-- was written. The stored values are monotonic absolute values from several writers (one per input
-- topic), so max() per column is the current value whether or not parts have merged, a re-written row
-- changes nothing, and insert order does not matter. GROUP BY (rather than FINAL) does this on unmerged
-- parts too; a WHERE on window_start/room_id (GROUP BY keys) is pushed below the aggregation, so
-- filtered reads stay cheap. CAST gives BI plain column types (max() of a SimpleAggregateFunction
-- column keeps the SimpleAggregateFunction type).
CREATE VIEW IF NOT EXISTS {db}.room_window_stats AS
SELECT
    window_start,
    CAST(max(window_end) AS DateTime('UTC')) AS window_end,
    room_id,
    CAST(max(creator_id) AS UInt64) AS creator_id,
    CAST(max(views) AS UInt64) AS views,
    CAST(max(viewers) AS UInt64) AS viewers,
    CAST(max(clicks) AS UInt64) AS clicks,
    CAST(max(clickers) AS UInt64) AS clickers,
    CAST(max(orders) AS UInt64) AS orders,
    CAST(max(buyers) AS UInt64) AS buyers,
    CAST(max(gmv_fen) AS Int64) AS gmv_fen,
    CAST(max(refunds) AS UInt64) AS refunds,
    CAST(max(refund_fen) AS Int64) AS refund_fen,
    CAST(max(updated_at) AS DateTime64(3, 'UTC')) AS updated_at
FROM {db}.room_windows
GROUP BY window_start, room_id;

-- Public contract for BI: exactly one row per (window_start, creator_id), per-column maximum; see
-- room_window_stats for the why.
CREATE VIEW IF NOT EXISTS {db}.creator_window_stats AS
SELECT
    window_start,
    CAST(max(window_end) AS DateTime('UTC')) AS window_end,
    creator_id,
    CAST(max(views) AS UInt64) AS views,
    CAST(max(viewers) AS UInt64) AS viewers,
    CAST(max(clicks) AS UInt64) AS clicks,
    CAST(max(clickers) AS UInt64) AS clickers,
    CAST(max(orders) AS UInt64) AS orders,
    CAST(max(buyers) AS UInt64) AS buyers,
    CAST(max(gmv_fen) AS Int64) AS gmv_fen,
    CAST(max(refunds) AS UInt64) AS refunds,
    CAST(max(refund_fen) AS Int64) AS refund_fen,
    CAST(max(updated_at) AS DateTime64(3, 'UTC')) AS updated_at
FROM {db}.creator_windows
GROUP BY window_start, creator_id;

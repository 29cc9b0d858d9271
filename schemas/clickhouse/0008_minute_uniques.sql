-- Distinct users per (minute, room, creator, mcn, merchant, category, source), so one board answer can
-- read every figure at one cut-off (`as_of`, a minute boundary) and break them down by any dimension.
--
-- Why minutes: room_hourly_uniques (0004) counts users up to the newest raw event, while orders come
--   from window rows written a checkpoint later; a board mixing the two showed more buyers than orders
--   while data arrived. Cut at the same minute as the window sums, buyers can no longer run ahead.
-- Engine: AggregatingMergeTree of states. Replays re-insert users already in a state, so they cannot
--   inflate these counts. viewers / clickers use uniqCombined64 (within 1% over a campaign, small
--   states for head rooms with millions of viewers); buyers use uniqExact (orders are few, and an
--   approximate buyer count could exceed the exact order count of a row).
-- The dimension columns hold the EVENT's own values (0 / '' when absent); readers apply the registry
--   fallback (creators.mcn_id ...) at query time, so a registry change needs no backfill.
-- ORDER BY (minute, room_id, creator_id, ...): boards read a minute range, then group by a key.
-- PARTITION BY day, like raw_events (old days can be dropped as whole partitions).
-- cluster: shard_by cityHash64(room_id)
CREATE TABLE IF NOT EXISTS {db}.room_minute_uniques
(
    minute DateTime('UTC'),
    room_id UInt64,
    creator_id UInt64,
    mcn_id UInt64,
    merchant_id UInt64,
    category LowCardinality(String),
    source LowCardinality(String),
    viewers AggregateFunction(uniqCombined64, UInt64),
    clickers AggregateFunction(uniqCombined64, UInt64),
    buyers AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, room_id, creator_id, mcn_id, merchant_id, category, source);

-- Fills room_minute_uniques from every block inserted into raw_events (rows inserted after it exists).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_events_to_minute_uniques TO {db}.room_minute_uniques AS
SELECT
    toStartOfMinute(ts) AS minute,
    room_id,
    creator_id,
    mcn_id,
    merchant_id,
    category,
    source,
    uniqCombined64StateIf(user_id, type = 'view') AS viewers,
    uniqCombined64StateIf(user_id, type = 'click') AS clickers,
    uniqExactStateIf(user_id, type = 'order') AS buyers
FROM {db}.raw_events
GROUP BY minute, room_id, creator_id, mcn_id, merchant_id, category, source;

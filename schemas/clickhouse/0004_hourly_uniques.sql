-- Exact distinct users per (hour, room, creator), so campaign totals can count a user once however
-- many windows or hours they appear in (distinct counts never add up across windows).
--
-- Engine: AggregatingMergeTree holding uniqExactState(user_id) per event kind; merging the states of
--   the campaign's hours gives exact viewers / clickers / buyers. A replayed event re-inserts a user
--   already in the state, so replays cannot inflate these counts (unlike sums, which the campaign views
--   therefore take from the *_window_stats views: absolute per-window values, idempotent to re-writes).
-- Ids are UInt64 (event contract), so the states are uniqExact over UInt64.
-- ORDER BY (hour, room_id, creator_id): campaign views read an hour range, then group by room or creator;
--   creator_id is in the key so per-creator totals need no join back to rooms.
-- PARTITION BY month: about 24 * rooms rows a day, far fewer than raw_events.
-- cluster: shard_by cityHash64(room_id)
CREATE TABLE IF NOT EXISTS {db}.room_hourly_uniques
(
    hour DateTime('UTC'),
    room_id UInt64,
    creator_id UInt64,
    viewers AggregateFunction(uniqExact, UInt64),
    clickers AggregateFunction(uniqExact, UInt64),
    buyers AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, room_id, creator_id);

-- Fills room_hourly_uniques from every block inserted into raw_events (only rows inserted after this
-- view exists: migrate runs before the stream starts).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_events_to_hourly_uniques TO {db}.room_hourly_uniques AS
SELECT
    toStartOfHour(ts) AS hour,
    room_id,
    creator_id,
    uniqExactStateIf(user_id, type = 'view') AS viewers,
    uniqExactStateIf(user_id, type = 'click') AS clickers,
    uniqExactStateIf(user_id, type = 'order') AS buyers
FROM {db}.raw_events
GROUP BY hour, room_id, creator_id;

-- 破亿 / 破千万 moments: one row per (campaign, kind, key, threshold) a room or creator has crossed.
--
-- Written by pipeline.serving.milestones.MilestoneWatcher BEFORE it publishes the milestone to
-- live.milestones (published = 0), and again AFTER the broker acknowledged it (published = 1); the
-- watcher re-publishes rows still at 0 when it starts, so a crash between the two writes yields at most
-- one duplicate message, never a lost one (messages carry a deterministic milestone_id for consumers).
-- Engine: ReplacingMergeTree(published): the published = 1 row of a key wins; a re-detected milestone
--   is never inserted again because the watcher reads this table first.
-- ORDER BY (campaign_id, kind, id, threshold_fen): the replacing key; the API reads one campaign.
-- non_replicated_deduplication_window: a retried insert of the same block is dropped.
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.milestones
(
    campaign_id String,
    kind LowCardinality(String),
    id UInt64,
    threshold_fen Int64,
    gmv_fen Int64,
    detected_at DateTime64(3, 'UTC'),
    published UInt8
)
ENGINE = ReplacingMergeTree(published)
ORDER BY (campaign_id, kind, id, threshold_fen)
SETTINGS non_replicated_deduplication_window = 1000;

-- Leaderboard snapshots: per campaign and kind (room / creator), the sums of the additive metrics of
-- every key over the campaign's SEALED windows [starts_at, sealed_until), so a leaderboard request only
-- aggregates the unsealed tail of windows instead of the whole campaign (100k keys, 10M window rows).
-- Written by pipeline.serving.rollup: each roll writes a complete new snapshot (snapshot_id = roll time,
-- ms) = previous snapshot + the windows newly sealed, then points the ledger at it; a crash between the
-- two leaves an orphan snapshot nobody reads. A window re-written after it was sealed (a replay, a
-- lagging partition) is detected by its updated_at and the snapshot is rebuilt from the start.
-- Sums are of the *_window_stats rows (max per window and key first): never of raw window rows.
-- Engine: plain MergeTree; old snapshots are removed by lightweight DELETE after the ledger moved on.
-- ORDER BY (campaign_id, kind, snapshot_id, id): a request reads exactly one snapshot, a key range.
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.leaderboard_snapshots
(
    campaign_id String,
    kind LowCardinality(String),
    snapshot_id UInt64,
    id UInt64,
    creator_id UInt64,
    views UInt64,
    orders UInt64,
    gmv_fen Int64
)
ENGINE = MergeTree
ORDER BY (campaign_id, kind, snapshot_id, id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Which snapshot is current per (campaign, kind), and which windows it covers.
-- Engine: ReplacingMergeTree(snapshot_id): the newest snapshot wins; read with FINAL (tiny table).
-- rolled_at: server time taken BEFORE the snapshot's data was read; a window whose updated_at is not
--   older than it may be missing from the snapshot.
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.leaderboard_snapshot_ledger
(
    campaign_id String,
    kind LowCardinality(String),
    snapshot_id UInt64,
    sealed_until DateTime('UTC'),
    rolled_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(snapshot_id)
ORDER BY (campaign_id, kind);

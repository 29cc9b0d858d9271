-- The dimension registry (deploy/dimensions.toml): who a creator, an agency (MCN), a merchant and a
-- category are, so boards and BI tools show names instead of numeric ids.
--
-- Engine: ReplacingMergeTree(updated_at), like campaigns: re-loading the registry is an upsert by id and
--   the newest load wins. The loader (pipeline.clickhouse.dimensions.upsert_dimensions) runs
--   OPTIMIZE ... FINAL after loading (the tables are small), so plain reads see one row per id; the API
--   reads with FINAL anyway. Rows removed from the file are not deleted.
-- ORDER BY the id: the replacing key; BI tools join on it (`LEFT JOIN creators FINAL USING creator_id`).
-- Ids are UInt64 like in raw_events; 0 means "none" (an independent creator has mcn_id 0).

-- creators: kind is creator (达人), celebrity (明星) or brand (商家自播, a merchant's own account).
--   mcn_id / merchant_id / category / source are the creator's defaults: an event's own field wins,
--   the registry value is used when the event has none (see README, "Attribution").
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.creators
(
    creator_id UInt64,
    nickname String,
    avatar_url String DEFAULT '',
    kind LowCardinality(String) DEFAULT 'creator',
    mcn_id UInt64 DEFAULT 0,
    merchant_id UInt64 DEFAULT 0,
    category LowCardinality(String) DEFAULT '',
    source LowCardinality(String) DEFAULT '',
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY creator_id;

-- mcns: agencies (MCN 机构). region is the 区域MCN赛道 an agency competes in; signed_on the date it
--   signed with the platform (新锐MCN赛道 = signed within NEW_MCN_MONTHS months, a setting).
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.mcns
(
    mcn_id UInt64,
    name String,
    region LowCardinality(String) DEFAULT '',
    signed_on Date DEFAULT '1970-01-01',
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY mcn_id;

-- merchants: shops (商家) and the brand they sell.
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.merchants
(
    merchant_id UInt64,
    name String,
    brand String DEFAULT '',
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY merchant_id;

-- categories: the `category` text events carry (e.g. 美妆个护) with display names.
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.categories
(
    category String,
    name String,
    name_en String DEFAULT '',
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY category;

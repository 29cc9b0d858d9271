-- The campaign registry (大促): one row per campaign_id.
--
-- Engine: ReplacingMergeTree(updated_at) so re-loading the registry is an upsert: the newest load of a
--   campaign wins. The loader (pipeline.clickhouse.campaigns.upsert_campaigns) runs OPTIMIZE ... FINAL
--   after loading (the table is tiny), so plain reads see one row per campaign; the campaign views
--   read it with FINAL anyway.
-- ORDER BY campaign_id: the replacing key; the table is read whole.
-- starts_at / ends_at are instants in UTC, [starts_at, ends_at); `timezone` is the zone the campaign's
--   calendar days are defined in (Asia/Shanghai for all Douyin campaigns). Bounds are whole hours in
--   practice; the distinct counts in the campaign views are exact only for whole-hour bounds.
-- filters: JSON text of optional restrictions (categories, merchants...) for tools that apply them; the
--   campaign views in 0005 do not.
-- cluster: replicate_everywhere
CREATE TABLE IF NOT EXISTS {db}.campaigns
(
    campaign_id String,
    name String,
    name_en String DEFAULT '',
    starts_at DateTime('UTC'),
    ends_at DateTime('UTC'),
    timezone LowCardinality(String) DEFAULT 'Asia/Shanghai',
    filters String DEFAULT '{}',
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY campaign_id;

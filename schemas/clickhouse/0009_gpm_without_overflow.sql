-- gpm without overflow: 0005 computed `s.gmv_fen * 1000 / s.views`, and the product is Int64, which
-- wraps silently once a campaign's GMV passes 9.22e15 fen (922,337 orders at the per-order ceiling of
-- 10^10 fen): BI saw a negative gpm. The product is now taken in Float64 (the column was Float64 already,
-- from `/`), so gpm keeps its type and meaning: gmv_fen * 1000 / views, fen per thousand views.
-- Everything else is 0005 unchanged (see its comments). CREATE OR REPLACE VIEW: idempotent, and a plain
-- view holds no data, so replacing it loses nothing.
CREATE OR REPLACE VIEW {db}.campaign_room_totals AS
SELECT
    s.campaign_id AS campaign_id,
    s.room_id AS room_id,
    s.creator_id AS creator_id,
    s.views AS views,
    u.viewers AS viewers,
    s.clicks AS clicks,
    u.clickers AS clickers,
    s.orders AS orders,
    u.buyers AS buyers,
    s.gmv_fen AS gmv_fen,
    s.refunds AS refunds,
    s.refund_fen AS refund_fen,
    if(u.viewers = 0, 0, u.buyers / u.viewers) AS conversion,
    if(s.views = 0, 0, toFloat64(s.gmv_fen) * 1000 / s.views) AS gpm
FROM
(
    SELECT
        c.campaign_id AS campaign_id, w.room_id AS room_id, any(w.creator_id) AS creator_id,
        sum(w.views) AS views, sum(w.clicks) AS clicks, sum(w.orders) AS orders,
        sum(w.gmv_fen) AS gmv_fen, sum(w.refunds) AS refunds, sum(w.refund_fen) AS refund_fen
    FROM {db}.room_window_stats AS w
    CROSS JOIN (SELECT campaign_id, starts_at, ends_at FROM {db}.campaigns FINAL) AS c
    WHERE w.window_start >= c.starts_at AND w.window_start < c.ends_at
    GROUP BY campaign_id, room_id
) AS s
LEFT JOIN
(
    SELECT
        c.campaign_id AS campaign_id, h.room_id AS room_id,
        uniqExactMerge(h.viewers) AS viewers, uniqExactMerge(h.clickers) AS clickers,
        uniqExactMerge(h.buyers) AS buyers
    FROM {db}.room_hourly_uniques AS h
    CROSS JOIN (SELECT campaign_id, starts_at, ends_at FROM {db}.campaigns FINAL) AS c
    WHERE h.hour >= toStartOfHour(c.starts_at) AND h.hour < c.ends_at
    GROUP BY campaign_id, room_id
) AS u ON s.campaign_id = u.campaign_id AND s.room_id = u.room_id;

-- Per creator: additive metrics from creator windows, distinct users merged across all the creator's
-- rooms and hours (a user who watched two of the creator's rooms counts once). `rooms` = rooms hosted.
CREATE OR REPLACE VIEW {db}.campaign_creator_totals AS
SELECT
    s.campaign_id AS campaign_id,
    s.creator_id AS creator_id,
    u.rooms AS rooms,
    s.views AS views,
    u.viewers AS viewers,
    s.clicks AS clicks,
    u.clickers AS clickers,
    s.orders AS orders,
    u.buyers AS buyers,
    s.gmv_fen AS gmv_fen,
    s.refunds AS refunds,
    s.refund_fen AS refund_fen,
    if(u.viewers = 0, 0, u.buyers / u.viewers) AS conversion,
    if(s.views = 0, 0, toFloat64(s.gmv_fen) * 1000 / s.views) AS gpm
FROM
(
    SELECT
        c.campaign_id AS campaign_id, w.creator_id AS creator_id,
        sum(w.views) AS views, sum(w.clicks) AS clicks, sum(w.orders) AS orders,
        sum(w.gmv_fen) AS gmv_fen, sum(w.refunds) AS refunds, sum(w.refund_fen) AS refund_fen
    FROM {db}.creator_window_stats AS w
    CROSS JOIN (SELECT campaign_id, starts_at, ends_at FROM {db}.campaigns FINAL) AS c
    WHERE w.window_start >= c.starts_at AND w.window_start < c.ends_at
    GROUP BY campaign_id, creator_id
) AS s
LEFT JOIN
(
    SELECT
        c.campaign_id AS campaign_id, h.creator_id AS creator_id, uniqExact(h.room_id) AS rooms,
        uniqExactMerge(h.viewers) AS viewers, uniqExactMerge(h.clickers) AS clickers,
        uniqExactMerge(h.buyers) AS buyers
    FROM {db}.room_hourly_uniques AS h
    CROSS JOIN (SELECT campaign_id, starts_at, ends_at FROM {db}.campaigns FINAL) AS c
    WHERE h.hour >= toStartOfHour(c.starts_at) AND h.hour < c.ends_at
    GROUP BY campaign_id, creator_id
) AS u ON s.campaign_id = u.campaign_id AND s.creator_id = u.creator_id;

// The live leaderboard page: polls the worker's JSON API (no build step, no library).
// Three modes from the URL: boards (default), drill-down (?room=<id> or ?creator=<id>) and the wall
// screen (?screen=1). Board every REFRESH_MS, chart and milestones every SLOW_MS. Money is integer fen.
"use strict";
const REFRESH_MS = 2000, SLOW_MS = 5000, STALE_WRITE_MS = 30000, LOST_AFTER_MS = 6000, ROTATE_MS = 8000;
const YI_FEN = 1e10;  // 1亿 CNY in fen: the 破亿 moment
const params = new URLSearchParams(location.search);
// Board key -> API query and labels. kind= filters creators, track= agencies.
const BOARDS = {
  creator: {q: "by=creator", title: "达人带货榜 Top creators"},
  celebrity: {q: "by=creator&kind=celebrity", title: "明星带货榜 Celebrity board"},
  brand: {q: "by=creator&kind=brand", title: "商家自播榜 Brand self-broadcast"},
  room: {q: "by=room", title: "直播间榜 Top rooms"},
  mcn: {q: "by=mcn", title: "MCN机构榜 Agencies"},
  merchant: {q: "by=merchant", title: "商家榜 Merchants"},
  category: {q: "by=category", title: "品类榜 Categories"},
  source: {q: "by=source", title: "全域流量来源 Traffic sources"},
};
const SCREEN_ROTATION = ["creator", "celebrity", "room", "mcn", "source", "brand"];
const wanted = params.get("by");
const state = { campaign: params.get("campaign"), by: BOARDS[wanted] ? wanted : "creator",
  track: params.get("track") || "all",
  limit: Math.min(500, Math.max(1, parseInt(params.get("limit") || "20", 10) || 20)),
  campaigns: [], lastOk: 0, milestones: new Map(), seenMilestones: null, regions: new Set(),
  screen: params.get("screen") === "1", drill: params.get("room") ? ["room", params.get("room")]
    : params.get("creator") ? ["creator", params.get("creator")] : null,
  shownFen: null, targetFen: 0, rotation: 0, lastTotalFen: null };
const $ = (id) => document.getElementById(id);

function cny(fen) {  // fen -> "¥1.23亿" / "¥4,567.89万" / "¥12.34"
  const yuan = fen / 100;
  if (Math.abs(yuan) >= 1e8) return "¥" + (yuan / 1e8).toFixed(2) + "亿";
  if (Math.abs(yuan) >= 1e4) return "¥" + (yuan / 1e4).toLocaleString("zh-CN", {minimumFractionDigits: 2, maximumFractionDigits: 2}) + "万";
  return "¥" + yuan.toFixed(2);
}
const int = (n) => Number(n).toLocaleString("zh-CN");
const pct = (x) => (x * 100).toFixed(2) + "%";
const clock = (ms) => ms == null ? "–" : new Date(ms).toLocaleTimeString("zh-CN", {hour12: false, timeZone: "Asia/Shanghai"});
const levelName = (fen) => fen >= 1e10 ? "破亿" : fen >= 1e9 ? "破千万" : "破" + cny(fen);
const esc = (s) => String(s).replace(/[&<>"']/g, (ch) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[ch]));
const campaignBase = () => `/api/campaigns/${encodeURIComponent(state.campaign)}`;

function avatar(name, id, cls = "avatar") {  // a coloured initial: avatar URLs point off-site
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `<span class="${cls}" style="background:hsl(${h},55%,38%)">${esc(String(name).slice(0, 1))}</span>`;
}

async function getJSON(path) {
  const resp = await fetch(path, {cache: "no-store"});
  // Session cookie missing or void (WEB_AUTH_TOKEN changed): reloading the page shows the login form.
  if (resp.status === 401) { location.reload(); throw new Error("unauthorized"); }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.status);
  return body;
}

async function loadCampaigns() {
  const data = await getJSON("/api/campaigns");
  state.campaigns = data.campaigns;
  const pick = $("campaign");
  pick.innerHTML = "";
  for (const c of data.campaigns) {
    const opt = document.createElement("option");
    opt.value = c.id;
    opt.textContent = `${c.name} · ${c.name_en} (${c.status})`;
    pick.appendChild(opt);
  }
  const known = (id) => data.campaigns.some((c) => c.id === id);
  if (!known(state.campaign)) {
    const live = data.campaigns.filter((c) => c.status === "live");
    state.campaign = (live.find((c) => c.id === "demo") || live[0] || data.campaigns[0] || {}).id;
  }
  pick.value = state.campaign;
  $("screen-link").href = `?campaign=${encodeURIComponent(state.campaign)}&screen=1`;
}

function changeCell(change) {
  if (change === null || change === undefined) return '<span class="new">新</span>';
  if (change > 0) return `<span class="up">▲${change}</span>`;
  if (change < 0) return `<span class="down">▼${-change}</span>`;
  return '<span class="same">–</span>';
}

function boardQuery(key) {
  let q = BOARDS[key].q;
  if (key === "mcn" && state.track !== "all") q += `&track=${encodeURIComponent(state.track)}`;
  return q;
}

// Columns per board: [header, cell(row)]; the rates that fit each board (see pipeline/serving/README.md).
function columns(by) {
  const base = [["GMV", (r) => `<td class="num gmv">${cny(r.gmv_fen)}</td>`],
    ["订单 Orders", (r) => `<td class="num">${int(r.orders)}</td>`],
    ["成交人数 Buyers", (r) => `<td class="num">${int(r.buyers)}</td>`]];
  if (by === "creator" || by === "room") return [...base,
    ["转化 Conversion", (r) => `<td class="num">${pct(r.conversion)}</td>`],
    ["客单价 Per buyer", (r) => `<td class="num">${cny(r.spend_per_buyer_fen)}</td>`],
    ["GPM", (r) => `<td class="num">${cny(r.gpm)}</td>`]];
  if (by === "mcn") return [...base,
    ["观看人数 Viewers", (r) => `<td class="num">${int(r.viewers)}</td>`],
    ["转化 Conversion", (r) => `<td class="num">${pct(r.conversion)}</td>`],
    ["客单价 Per buyer", (r) => `<td class="num">${cny(r.spend_per_buyer_fen)}</td>`]];
  if (by === "source") return [...base,
    ["观看人数 Viewers", (r) => `<td class="num">${int(r.viewers)}</td>`],
    ["GMV占比 Share", (r) => `<td class="num share"><span class="bar" style="width:${(r.gmv_share * 100).toFixed(1)}%"></span>${pct(r.gmv_share)}</td>`],
    ["订单占比 Orders", (r) => `<td class="num">${pct(r.orders_share)}</td>`],
    ["观看占比 Viewers", (r) => `<td class="num">${pct(r.viewers_share)}</td>`]];
  return [...base,  // merchants, categories: views carry no product, so clicks are the funnel's top
    ["点击人数 Clickers", (r) => `<td class="num">${int(r.clickers)}</td>`],
    ["点击转化 Click→order", (r) => `<td class="num">${pct(r.click_conversion)}</td>`],
    ["客单价 Per buyer", (r) => `<td class="num">${cny(r.spend_per_buyer_fen)}</td>`]];
}

function nameCell(key, r) {
  const sub = key === "room" ? `<span class="small">达人 ${esc(r.creator_name)}</span>`
    : key === "mcn" ? `<span class="small">${esc(r.region || "")}</span>`
    : key === "source" ? `<span class="small">${r.field === "centre" ? "中心场 Centre" : r.field === "content" ? "内容场 Content" : ""}</span>`
    : key === "merchant" ? `<span class="small">${esc(r.brand || "")}</span>` : "";
  const kindTag = r.kind === "celebrity" ? '<span class="tag">明星</span>' : r.kind === "brand" ? '<span class="tag">自播</span>' : "";
  const label = `${avatar(r.name, r.id)}<span class="nm">${esc(r.name)}</span>${kindTag} ${sub}`;
  const drillable = key === "room" || BOARDS[key].q.startsWith("by=creator");
  if (!drillable) return label;
  const kind = key === "room" ? "room" : "creator";
  return `<a class="drill-link" href="?campaign=${encodeURIComponent(state.campaign)}&${kind}=${r.id}">${label}</a>`;
}

function renderBoard(data, key) {
  const cols = columns(data.by);
  const showChange = data.by === "creator" || data.by === "room";
  document.querySelector("#board thead").innerHTML = `<tr><th class="rank">#</th>${showChange ? '<th class="chg">±</th>' : ""}` +
    `<th class="id">名称 Name</th>${cols.map(([h]) => `<th class="num">${h}</th>`).join("")}</tr>`;
  const rows = data.rows.map((r) => {
    const m = showChange ? state.milestones.get(`${data.by}:${r.id}`) : null;
    const badge = m ? `<span class="badge">${levelName(m)}</span>` : "";
    return `<tr data-id="${esc(r.id)}" data-gmv="${r.gmv_fen}"${m ? ' class="milestone"' : ""}>` +
      `<td class="rank">${r.rank}</td>${showChange ? `<td class="chg">${changeCell(r.rank_change)}</td>` : ""}` +
      `<td class="id">${nameCell(key, r)}${badge}</td>${cols.map(([, cell]) => cell(r)).join("")}</tr>`;
  });
  document.querySelector("#board tbody").innerHTML = rows.join("") ||
    `<tr><td colspan="${cols.length + 3}" class="small">暂无数据 No data yet</td></tr>`;
  $("mix").hidden = data.by !== "source";
  if (data.by === "source") $("mix").innerHTML = mixBar(data.rows);
  for (const r of data.rows) if (r.region) state.regions.add(r.region);
  syncTracks();
  $("as-of").textContent = clock(data.as_of);
  if (data.updated_at !== undefined) $("updated").textContent = clock(data.updated_at);
  statusOf(data);
}

function mixBar(rows) {  // the 全域 split as one stacked bar: content field vs centre field
  const colors = {live_feed: "#ffb020", short_video: "#ff7a45", follow: "#f5d76e", search: "#36cfc9", mall: "#597ef7", other: "#8b95a7", unknown: "#4a5262"};
  return '<div class="stack">' + rows.filter((r) => r.gmv_share > 0).map((r) =>
    `<span style="width:${(r.gmv_share * 100).toFixed(2)}%;background:${colors[r.id] || "#8b95a7"}" title="${esc(r.name)} ${pct(r.gmv_share)}">${r.gmv_share > 0.07 ? esc(r.name.split(" ")[0]) : ""}</span>`).join("") + "</div>";
}

function syncTracks() {
  $("tracks").hidden = state.by !== "mcn";
  const pick = $("track");
  for (const region of [...state.regions].sort()) {
    const value = `region:${region}`;
    if (![...pick.options].some((o) => o.value === value)) {
      const opt = document.createElement("option");
      opt.value = value;
      opt.textContent = `区域MCN · ${region}`;
      pick.appendChild(opt);
    }
  }
  pick.value = state.track;
}

function statusOf(data) {
  const c = data.campaign;
  $("campaign-status").textContent = c.status;
  $("campaign-status").className = "status " + c.status;
  const stale = c.status === "live" && data.updated_at !== undefined &&
    (data.updated_at == null || Date.now() - data.updated_at > STALE_WRITE_MS);
  setConn(stale ? "stale" : "ok", stale ? "数据停滞 Data stale" : "实时 Live");
}

function renderTotal(data) {  // the running total: live_totals includes the minutes after as_of
  const live = data.live_totals || data.totals;
  const total = $("total-gmv");
  total.textContent = cny(live.gmv_fen);
  total.dataset.fen = live.gmv_fen;
  $("total-orders").textContent = `${int(live.orders)} 单 orders · ${int(data.totals.keys)} creators`;
  celebrateCrossing(live.gmv_fen);
}

function setConn(cls, text) {
  const el = $("conn");
  el.className = "conn " + cls;
  el.textContent = text;
}

function renderChart(series) {
  const svg = $("chart"), W = 600, H = 260, pad = 4;
  if (!series.length) { svg.innerHTML = ""; return; }
  const max = Math.max(...series.map((p) => p.gmv_fen), 1);
  const step = (W - 2 * pad) / Math.max(series.length, 1);
  const bars = series.map((p, i) => {
    const h = (H - 20) * p.gmv_fen / max;
    return `<rect x="${pad + i * step}" y="${H - h}" width="${Math.max(step - 1, 1)}" height="${h}" fill="#ffb020"><title>${clock(p.window_start)} ${cny(p.gmv_fen)}</title></rect>`;
  });
  svg.innerHTML = `<text x="4" y="14" fill="#8b95a7" font-size="13">max ${cny(max)}/min</text>` + bars.join("");
}

function renderMilestones(list) {
  state.milestones = new Map();
  for (const m of list) {
    const key = `${m.kind}:${m.id}`;
    state.milestones.set(key, Math.max(state.milestones.get(key) || 0, m.threshold_fen));
  }
  $("milestones").innerHTML = list.slice(0, 8).map((m) =>
    `<li>★ ${clock(m.detected_at)} ${m.kind === "room" ? "房间" : "达人"} ${m.id} ${levelName(m.threshold_fen)}</li>`).join("");
  const ids = new Set(list.map((m) => `${m.kind}:${m.id}:${m.threshold_fen}`));
  if (state.seenMilestones) {
    const fresh = list.find((m) => !state.seenMilestones.has(`${m.kind}:${m.id}:${m.threshold_fen}`));
    if (fresh) {
      const text = `${fresh.kind === "room" ? "房间" : "达人"} ${fresh.id} ${levelName(fresh.threshold_fen)}!`;
      if (state.screen && fresh.threshold_fen >= YI_FEN) celebrate(`★ ${text}`); else toast(`★ ${text}`);
    }
  }
  state.seenMilestones = ids;
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 10000);
}

function celebrate(text) {  // the 破亿 moment, full screen, for 12 s
  $("celebrate-text").textContent = text;
  $("celebrate").hidden = false;
  clearTimeout(celebrate.timer);
  celebrate.timer = setTimeout(() => { $("celebrate").hidden = true; }, 12000);
}

function celebrateCrossing(fen) {  // only a crossing seen live is celebrated, not a total already past it
  const before = state.lastTotalFen;
  state.lastTotalFen = fen;
  $("screen-badge").hidden = fen < YI_FEN;
  if (before !== null && before < YI_FEN && fen >= YI_FEN) celebrate("★ 大促破亿! GMV ¥1亿+");
}

async function refreshBoard() {
  if (!state.campaign) return;
  try {
    const data = await getJSON(`${campaignBase()}/leaderboard?${boardQuery(state.by)}&limit=${state.limit}`);
    renderBoard(data, state.by);
    if (data.live_totals) renderTotal(data);
    else renderTotal(await getJSON(`${campaignBase()}/leaderboard?by=creator&limit=1`));
    state.lastOk = Date.now();
    $("refreshed").textContent = clock(state.lastOk);
  } catch (err) {
    lost(err);
  }
}

function lost(err) {
  if (Date.now() - state.lastOk > LOST_AFTER_MS || !state.lastOk)
    setConn("lost", `连接中断 Connection lost (${err.message}) · last ok ${clock(state.lastOk || null)}`);
}

async function refreshSlow() {
  if (!state.campaign) return;
  try { renderChart((await getJSON(`${campaignBase()}/gmv?minutes=60`)).series); } catch (err) { /* board shows the outage */ }
  try { renderMilestones((await getJSON(`${campaignBase()}/milestones`)).milestones); } catch (err) { /* idem */ }
}

function select(by) {
  state.by = by;
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.by === by));
  refreshBoard();
}

// -- drill-down -------------------------------------------------------------------------------------

function curve(svgId, series, field, color, money) {
  const svg = $(svgId), W = 600, H = 160;
  if (!series.length) { svg.innerHTML = ""; return; }
  const max = Math.max(...series.map((p) => p[field]), 1);
  const step = W / Math.max(series.length - 1, 1);
  const pts = series.map((p, i) => `${(i * step).toFixed(1)},${(H - 4 - (H - 24) * p[field] / max).toFixed(1)}`);
  const last = series[series.length - 1][field];
  svg.innerHTML = `<polyline points="0,${H} ${pts.join(" ")} ${W},${H}" fill="${color}" fill-opacity=".18" stroke="none"/>` +
    `<polyline points="${pts.join(" ")}" fill="none" stroke="${color}" stroke-width="2.5" vector-effect="non-scaling-stroke"/>` +
    `<text x="4" y="14" fill="#8b95a7" font-size="13">max ${money ? cny(max) : int(max)} · now ${money ? cny(last) : int(last)}</text>`;
}

function renderDrill(summary, series) {
  const [kind] = state.drill;
  $("drill-name").textContent = summary.name;
  $("drill-avatar").outerHTML = avatar(summary.name, summary.id, "avatar big-avatar").replace("<span", '<span id="drill-avatar"');
  const kindName = {creator: "达人 Creator", celebrity: "明星 Celebrity", brand: "商家自播 Brand"}[summary.kind] || summary.kind;
  $("drill-sub").textContent = kind === "room" ? `直播间 Room ${summary.id} · 达人 ${summary.creator_name} · 数据截至 ${clock(summary.as_of)}`
    : `${kindName} · ID ${summary.id} · 数据截至 ${clock(summary.as_of)}`;
  const f = summary.funnel;
  $("drill-kpis").innerHTML = [["GMV", cny(f.gmv_fen)], ["订单 Orders", int(f.orders)], ["成交人数 Buyers", int(f.buyers)],
    ["观看人数 Viewers", int(f.viewers)], ["客单价 Per buyer", cny(f.spend_per_buyer_fen)], ["UV价值 UV value", cny(f.uv_value_fen)],
    ["GPM", cny(f.gpm)], ["退款率 Refund rate", pct(f.refund_rate)]]
    .map(([k, v]) => `<div class="kpi"><div class="label">${k}</div><div class="kpi-v">${v}</div></div>`).join("");
  const steps = [["观看人数 Viewers", f.viewers, `观看 ${int(f.views)} 次 views`], ["点击人数 Clickers", f.clickers, `点击率 CTR ${pct(f.click_through)}`],
    ["成交人数 Buyers", f.buyers, `点击-成交 ${pct(f.click_conversion)} · 观看-成交 ${pct(f.conversion)}`]];
  const top = Math.max(f.viewers, 1);
  $("funnel").innerHTML = steps.map(([label, n, rate]) =>
    `<div class="step"><div class="step-bar" style="width:${Math.max(4, 100 * n / top).toFixed(1)}%"><span>${label} ${int(n)}</span></div><div class="rate">${rate}</div></div>`).join("");
  $("drill-sources").innerHTML = mixBar(summary.sources) + '<table class="mini">' + summary.sources.map((s) =>
    `<tr><td>${esc(s.name)}</td><td class="num">${cny(s.gmv_fen)}</td><td class="num">${pct(s.gmv_share)}</td><td class="num">${int(s.viewers)} 人</td></tr>`).join("") + "</table>";
  curve("curve-gmv", series, "gmv_fen", "#ffb020", true);
  curve("curve-viewers", series, "viewers", "#36cfc9", false);
  curve("curve-orders", series, "orders", "#ff7a45", false);
}

async function refreshDrill() {
  const [kind, id] = state.drill;
  const path = `${campaignBase()}/${kind === "room" ? "rooms" : "creators"}/${encodeURIComponent(id)}`;
  try {
    const [summary, series] = await Promise.all([getJSON(`${path}/summary`), getJSON(`${path}?minutes=1440`)]);
    renderDrill(summary, series.series);
    state.lastOk = Date.now();
    $("refreshed").textContent = clock(state.lastOk);
    setConn("ok", "实时 Live");
  } catch (err) {
    lost(err);
  }
}

// -- wall screen ------------------------------------------------------------------------------------

function tick() {  // GMV counts up towards the newest total instead of jumping
  if (state.shownFen === null) state.shownFen = state.targetFen;
  const gap = state.targetFen - state.shownFen;
  state.shownFen = Math.abs(gap) < 100 ? state.targetFen : state.shownFen + gap * 0.08;
  $("screen-gmv").textContent = cny(Math.round(state.shownFen));
  $("screen-gmv").dataset.fen = state.targetFen;
  requestAnimationFrame(tick);
}

async function refreshScreen() {
  if (!state.campaign) return;
  const key = SCREEN_ROTATION[state.rotation % SCREEN_ROTATION.length];
  try {
    const [board, totals] = await Promise.all([
      getJSON(`${campaignBase()}/leaderboard?${boardQuery(key)}&limit=8`),
      getJSON(`${campaignBase()}/leaderboard?by=creator&limit=1`)]);
    const live = totals.live_totals;
    state.targetFen = live.gmv_fen;
    celebrateCrossing(live.gmv_fen);
    $("screen-orders").textContent = `${int(live.orders)} 单 orders · 截至 ${clock(totals.as_of)}`;
    const c = totals.campaign;
    $("screen-title").textContent = `${c.name} · ${c.name_en}`;
    $("screen-board-title").textContent = BOARDS[key].title;
    $("screen-dots").innerHTML = SCREEN_ROTATION.map((k) => `<span class="${k === key ? "on" : ""}"></span>`).join("");
    document.querySelector("#screen-table tbody").innerHTML = board.rows.map((r) =>
      `<tr data-id="${esc(r.id)}"><td class="rank">${r.rank}</td><td class="id">${avatar(r.name, r.id)}<span class="nm">${esc(r.name)}</span></td>` +
      `<td class="num gmv">${cny(r.gmv_fen)}</td><td class="num">${int(r.orders)} 单</td>` +
      `<td class="num small">${key === "source" ? "占比 " + pct(r.gmv_share) : int(r.buyers) + " 人"}</td></tr>`).join("") ||
      '<tr><td class="small">暂无数据 No data yet</td></tr>';
    state.lastOk = Date.now();
    setConn("ok", "实时 Live");
  } catch (err) {
    lost(err);
  }
}

async function start() {
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => select(b.dataset.by));
  $("track").addEventListener("change", (e) => { state.track = e.target.value; refreshBoard(); });
  $("campaign").addEventListener("change", (e) => {
    state.campaign = e.target.value; state.seenMilestones = null; state.lastTotalFen = null; refreshSlow(); refreshBoard();
  });
  while (!state.campaigns.length) {
    try { await loadCampaigns(); } catch (err) { setConn("lost", "连接中断 Connection lost"); await new Promise((r) => setTimeout(r, REFRESH_MS)); }
  }
  if (state.screen) {
    document.body.classList.add("screen-mode");
    $("main").hidden = true;
    $("screen").hidden = false;
    await refreshScreen();
    requestAnimationFrame(tick);
    setInterval(refreshScreen, REFRESH_MS);
    setInterval(() => { state.rotation += 1; refreshScreen(); }, ROTATE_MS);
    setInterval(() => getJSON(`${campaignBase()}/milestones`).then((d) => renderMilestones(d.milestones)).catch(() => {}), SLOW_MS);
    return;
  }
  if (state.drill) {
    $("board-section").hidden = true;
    $("drill").hidden = false;
    $("drill-back").href = `?campaign=${encodeURIComponent(state.campaign)}`;
    await refreshDrill();
    setInterval(refreshDrill, SLOW_MS);
    refreshSlow();
    setInterval(refreshSlow, SLOW_MS);
    getJSON(`${campaignBase()}/leaderboard?by=creator&limit=1`).then(renderTotal).catch(() => {});
    return;
  }
  select(state.by);
  await refreshSlow();
  setInterval(refreshBoard, REFRESH_MS);
  setInterval(refreshSlow, SLOW_MS);
  setInterval(() => loadCampaigns().catch(() => {}), 60000);
}
start();

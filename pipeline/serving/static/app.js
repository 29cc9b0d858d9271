// The live leaderboard page: polls the worker's JSON API (no build step, no library).
// Board every REFRESH_MS, chart and milestones every SLOW_MS. Money arrives as integer fen.
"use strict";
const REFRESH_MS = 2000, SLOW_MS = 5000, STALE_WRITE_MS = 30000, LOST_AFTER_MS = 6000;
const params = new URLSearchParams(location.search);
const state = { campaign: params.get("campaign"), by: params.get("by") === "room" ? "room" : "creator",
  limit: Math.min(500, Math.max(1, parseInt(params.get("limit") || "20", 10) || 20)),
  campaigns: [], lastOk: 0, milestones: new Map(), seenMilestones: null };
const $ = (id) => document.getElementById(id);

function cny(fen) {  // fen -> "¥1.23亿" / "¥4,567.89万" / "¥12.34"
  const yuan = fen / 100;
  if (Math.abs(yuan) >= 1e8) return "¥" + (yuan / 1e8).toFixed(2) + "亿";
  if (Math.abs(yuan) >= 1e4) return "¥" + (yuan / 1e4).toLocaleString("zh-CN", {minimumFractionDigits: 2, maximumFractionDigits: 2}) + "万";
  return "¥" + yuan.toFixed(2);
}
const int = (n) => Number(n).toLocaleString("zh-CN");
const clock = (ms) => ms == null ? "–" : new Date(ms).toLocaleTimeString("zh-CN", {hour12: false, timeZone: "Asia/Shanghai"});
const levelName = (fen) => fen >= 1e10 ? "破亿" : fen >= 1e9 ? "破千万" : "破" + cny(fen);

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
}

function changeCell(change) {
  if (change === null || change === undefined) return '<span class="new">新</span>';
  if (change > 0) return `<span class="up">▲${change}</span>`;
  if (change < 0) return `<span class="down">▼${-change}</span>`;
  return '<span class="same">–</span>';
}

function renderBoard(data) {
  const rows = data.rows.map((r) => {
    const m = state.milestones.get(`${data.by}:${r.id}`);
    const badge = m ? `<span class="badge">${levelName(m)}</span>` : "";
    const who = data.by === "room" ? `房间 ${r.id} <span class="small">达人 ${r.creator_id}</span>` : `达人 ${r.id}`;
    return `<tr data-id="${r.id}" data-gmv="${r.gmv_fen}"${m ? ' class="milestone"' : ""}>` +
      `<td class="rank">${r.rank}</td><td class="chg">${changeCell(r.rank_change)}</td><td class="id">${who}${badge}</td>` +
      `<td class="num gmv">${cny(r.gmv_fen)}</td><td class="num">${int(r.orders)}</td><td class="num">${int(r.buyers)}</td>` +
      `<td class="num">${(r.conversion * 100).toFixed(2)}%</td><td class="num">${cny(r.gpm)}</td></tr>`;
  });
  document.querySelector("#board tbody").innerHTML = rows.join("") ||
    '<tr><td colspan="8" class="small">暂无数据 No data yet</td></tr>';
  const total = $("total-gmv");
  total.textContent = cny(data.totals.gmv_fen);
  total.dataset.fen = data.totals.gmv_fen;
  $("total-orders").textContent = `${int(data.totals.orders)} 单 orders · ${int(data.totals.keys)} ${data.by === "room" ? "rooms" : "creators"}`;
  $("as-of").textContent = clock(data.as_of);
  $("updated").textContent = clock(data.updated_at);
  const c = data.campaign;
  $("campaign-status").textContent = c.status;
  $("campaign-status").className = "status " + c.status;
  const stale = c.status === "live" && (data.updated_at == null || Date.now() - data.updated_at > STALE_WRITE_MS);
  setConn(stale ? "stale" : "ok", stale ? "数据停滞 Data stale" : "实时 Live");
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
    `<li>🎉 ${clock(m.detected_at)} ${m.kind === "room" ? "房间" : "达人"} ${m.id} ${levelName(m.threshold_fen)}</li>`).join("");
  const ids = new Set(list.map((m) => `${m.kind}:${m.id}:${m.threshold_fen}`));
  if (state.seenMilestones) {
    const fresh = list.find((m) => !state.seenMilestones.has(`${m.kind}:${m.id}:${m.threshold_fen}`));
    if (fresh) toast(`🎉 ${fresh.kind === "room" ? "房间" : "达人"} ${fresh.id} ${levelName(fresh.threshold_fen)}!`);
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

async function refreshBoard() {
  if (!state.campaign) return;
  try {
    const q = `by=${state.by}&limit=${state.limit}`;
    renderBoard(await getJSON(`/api/campaigns/${encodeURIComponent(state.campaign)}/leaderboard?${q}`));
    state.lastOk = Date.now();
    $("refreshed").textContent = clock(state.lastOk);
  } catch (err) {
    if (Date.now() - state.lastOk > LOST_AFTER_MS || !state.lastOk)
      setConn("lost", `连接中断 Connection lost (${err.message}) · last ok ${clock(state.lastOk || null)}`);
  }
}

async function refreshSlow() {
  if (!state.campaign) return;
  const base = `/api/campaigns/${encodeURIComponent(state.campaign)}`;
  try { renderChart((await getJSON(`${base}/gmv?minutes=60`)).series); } catch (err) { /* board shows the outage */ }
  try { renderMilestones((await getJSON(`${base}/milestones`)).milestones); } catch (err) { /* idem */ }
}

function select(by) {
  state.by = by;
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.by === by));
  refreshBoard();
}

async function start() {
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => select(b.dataset.by));
  $("campaign").addEventListener("change", (e) => {
    state.campaign = e.target.value; state.seenMilestones = null; refreshSlow(); refreshBoard();
  });
  while (!state.campaigns.length) {
    try { await loadCampaigns(); } catch (err) { setConn("lost", "连接中断 Connection lost"); await new Promise((r) => setTimeout(r, REFRESH_MS)); }
  }
  select(state.by);
  await refreshSlow();
  setInterval(refreshBoard, REFRESH_MS);
  setInterval(refreshSlow, SLOW_MS);
  setInterval(() => loadCampaigns().catch(() => {}), 60000);
}
start();

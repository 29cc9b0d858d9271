// Sends N events through the SDK with node's real fetch to a collector; prints their event_ids as JSON.
// Usage: node send_with_sdk.js ENDPOINT N ROOM_ID
"use strict";
const path = require("node:path");
const LiveCommerce = require(path.join(__dirname, "../../pipeline/collector/static/livecommerce.js"));

const [endpoint, n, room] = process.argv.slice(2);
const rejected = [];
const lc = LiveCommerce.init({ endpoint, maxBatch: 7, flushIntervalMs: 200, watchPage: false,
  onRejected: (ev, reason) => rejected.push(reason), onError: (e) => { console.error(e); process.exit(1); } });
const ids = [];
for (let i = 0; i < Number(n); i++) {
  ids.push(lc.track("view", { room_id: room, creator_id: 1, user_id: i + 1, source: "live_feed" }).event_id);
}
lc.track("click", { room_id: room, creator_id: 1, user_id: 1 }); // no product_id: rejected by the contract
lc.shutdown().then(() => {
  console.log(JSON.stringify({ ids, rejected, left: lc.queue.length + (lc.inFlight || []).length }));
});

// The JS SDK with node's built-in test runner (node --test); run from tests/test_collector_sdk.py.
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const path = require("node:path");
const LiveCommerce = require(path.join(__dirname, "../../pipeline/collector/static/livecommerce.js"));

// A fake clock and timers: a test advances time explicitly.
function fakeTime() {
  let now = 1_760_000_000_000, seq = 0;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout: (fn, ms) => { const id = ++seq; timers.set(id, { at: now + ms, fn }); return id; },
    clearTimeout: (id) => timers.delete(id),
    async advance(ms) {
      const until = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
        await new Promise((r) => setImmediate(r));
      }
      now = until;
      await new Promise((r) => setImmediate(r));
    },
  };
}

function collector(answers) {
  const calls = [];
  const transport = async (url, body, headers, keepalive) => {
    calls.push({ url, body, headers, keepalive, events: JSON.parse(body) });
    const next = answers.length ? answers.shift() : null;
    if (next === "network") throw new Error("offline");
    const n = JSON.parse(body).length;
    return next || { status: 200, retryAfter: null, text: JSON.stringify({ accepted: n, rejected: 0,
      results: Array(n).fill({ status: "accepted" }) }) };
  };
  return { calls, transport };
}

function client(time, transport, extra = {}) {
  return LiveCommerce.init({ endpoint: "http://c.example/", appKey: "k".repeat(20), transport, watchPage: false,
    now: time.now, setTimeout: time.setTimeout, clearTimeout: time.clearTimeout, flushIntervalMs: 3000,
    maxBatch: 5, ...extra });
}

const view = { room_id: "7300000000000000002", creator_id: 12, user_id: 34n };

test("events get a unique event_id and ts, and 64-bit ids stay exact integers", async () => {
  const time = fakeTime(), c = collector([]);
  const lc = client(time, c.transport);
  const a = lc.track("view", view), b = lc.track("view", view);
  assert.notStrictEqual(a.event_id, b.event_id);
  assert.strictEqual(a.ts, time.now());
  await time.advance(3000);
  assert.strictEqual(c.calls.length, 1);
  assert.match(c.calls[0].body, /"room_id":7300000000000000002,/);
  assert.match(c.calls[0].body, /"user_id":34[,}]/);
  assert.strictEqual(c.calls[0].url, "http://c.example/v1/events");
  assert.strictEqual(c.calls[0].headers["X-App-Key"], "k".repeat(20));
});

test("a full batch is sent at once, the rest after the interval", async () => {
  const time = fakeTime(), c = collector([]);
  const lc = client(time, c.transport);
  for (let i = 0; i < 7; i++) lc.track("view", view);
  await time.advance(0);
  assert.deepStrictEqual(c.calls.map((x) => x.events.length), [5]);
  await time.advance(3000);
  assert.deepStrictEqual(c.calls.map((x) => x.events.length), [5, 2]);
});

test("503 and network errors are retried with backoff and the same event ids", async () => {
  const time = fakeTime();
  const c = collector([{ status: 503, retryAfter: "7", text: "{}" }, "network"]);
  const lc = client(time, c.transport);
  lc.track("view", view);
  lc.track("click", { ...view, product_id: 5 });
  await time.advance(3000);
  assert.strictEqual(c.calls.length, 1);
  await time.advance(6900);
  assert.strictEqual(c.calls.length, 1, "Retry-After: 7 is honoured");
  await time.advance(200);
  assert.strictEqual(c.calls.length, 2);
  await time.advance(5000);
  assert.strictEqual(c.calls.length, 3);
  const ids = c.calls.map((x) => x.events.map((e) => e.event_id).join());
  assert.strictEqual(new Set(ids).size, 1, "every retry carries the same events");
  await time.advance(10000);
  assert.strictEqual(c.calls.length, 3, "accepted: not sent again");
});

test("rejected events are reported; a 400 upload is dropped, not retried forever", async () => {
  const time = fakeTime();
  const rejected = [], errors = [];
  const c = collector([
    { status: 200, text: JSON.stringify({ accepted: 1, rejected: 1, results: [{ status: "accepted" },
      { status: "rejected", reason: "missing_field", message: "required field 'product_id' is missing" }] }) },
    { status: 400, text: '{"error":"not_json"}' },
  ]);
  const lc = client(time, c.transport, { onRejected: (ev, reason) => rejected.push([ev.type, reason]),
    onError: (e) => errors.push(e.message) });
  lc.track("view", view);
  lc.track("click", view);
  await time.advance(3000);
  assert.deepStrictEqual(rejected, [["click", "missing_field"]]);
  lc.track("view", view);
  await time.advance(3000);
  await time.advance(60000);
  assert.strictEqual(c.calls.length, 2);
  assert.strictEqual(errors.length, 1);
});

test("page hide sends everything with sendBeacon, key in the URL, text/plain", async () => {
  const time = fakeTime(), c = collector([]), beacons = [];
  const lc = client(time, c.transport, { sendBeacon: (url, body) => { beacons.push({ url, body }); return true; } });
  for (let i = 0; i < 3; i++) lc.track("view", view);
  lc.flushOnHide();
  assert.strictEqual(beacons.length, 1);
  assert.ok(beacons[0].url.endsWith("/v1/events?app_key=" + "k".repeat(20)));
  assert.strictEqual(beacons[0].body.type, "text/plain");
  assert.strictEqual(JSON.parse(await beacons[0].body.text()).length, 3);
  await time.advance(3000);
  assert.strictEqual(c.calls.length, 0, "nothing left to send");
});

test("without sendBeacon, page hide uses keepalive requests under 64 KiB each", async () => {
  const time = fakeTime(), c = collector([]);
  const lc = client(time, c.transport, { maxQueue: 5000, maxBatch: 5000 });
  for (let i = 0; i < 600; i++) lc.track("view", { ...view, category: "x".repeat(200) });
  lc.flushOnHide();
  await time.advance(0);
  assert.ok(c.calls.length >= 2 && c.calls.every((x) => x.keepalive && x.body.length < 64 * 1024));
  assert.strictEqual(c.calls.reduce((n, x) => n + x.events.length, 0), 600);
});

test("the buffer is bounded: the oldest events are dropped and reported", async () => {
  const time = fakeTime(), c = collector(["network", "network", "network"]), dropped = [];
  const lc = client(time, c.transport, { maxQueue: 10, onDropped: (ev) => dropped.push(ev) });
  for (let i = 0; i < 25; i++) lc.track("view", view);
  assert.ok(lc.queue.length <= 10);
  assert.strictEqual(dropped.length + lc.queue.length + (lc.inFlight || []).length, 25);
});

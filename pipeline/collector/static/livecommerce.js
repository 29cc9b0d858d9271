/*
 * livecommerce.js: the browser / mini-program SDK of the livecommerce collector. One file, no build
 * step, no dependencies. Load it with <script src="https://COLLECTOR/sdk/livecommerce.js"></script>
 * (global `LiveCommerce`) or require() it (CommonJS, e.g. a WeChat mini-program).
 *
 *   var lc = LiveCommerce.init({ endpoint: "https://collector.example.com", appKey: "web-key" });
 *   lc.track("view", { room_id: "7300000000000000002", creator_id: 12, user_id: 34, source: "live_feed" });
 *
 * Contract (schemas/events): every event gets a unique `event_id` and `ts` (epoch ms UTC, this
 * device's clock) when it is tracked. Events are buffered and uploaded as one JSON array when
 * `maxBatch` are waiting or every `flushIntervalMs`. An upload refused with 429/503 or lost on the
 * network is retried with exponential backoff (Retry-After honoured) with the SAME events and ids:
 * the pipeline drops duplicates, so a retry after a lost answer never counts twice. An upload refused
 * as a whole with another 4xx is dropped (it would fail again) and reported to `onError`; events the
 * collector rejects one by one are reported to `onRejected` with the contract's reason.
 * When the page is hidden the buffer is sent with fetch(keepalive) (sendBeacon where fetch is missing).
 *
 * Ids above 2^53 (room ids are 64-bit) lose precision as JS numbers: pass them as decimal strings or
 * BigInt; they are written to JSON as integers.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.LiveCommerce = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var ID_FIELDS = ["room_id", "creator_id", "user_id", "product_id", "merchant_id", "mcn_id"];
  var BIG = "\u0000big:";
  var KEEPALIVE_MAX_BYTES = 60000; // browsers cap the body of keepalive requests at 64 KiB in total

  function uuid() {
    var c = typeof crypto !== "undefined" ? crypto : null;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = "";
    for (var j = 0; j < 16; j++) h += (b[j] + 0x100).toString(16).slice(1);
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  /** JSON text of `events` with BigInt and decimal-string ids written as JSON integers. */
  function serialize(events) {
    var text = JSON.stringify(events, function (key, value) {
      if (typeof value === "bigint") return BIG + value.toString();
      if (typeof value === "string" && ID_FIELDS.indexOf(key) >= 0 && /^[1-9][0-9]{0,18}$/.test(value)) {
        return BIG + value;
      }
      return value;
    });
    return text.replace(/"\\u0000big:([0-9]+)"/g, "$1");
  }

  function fetchTransport(fetchImpl) {
    return function (url, body, headers, keepalive) {
      return fetchImpl(url, { method: "POST", body: body, headers: headers, keepalive: !!keepalive }).then(
        function (r) {
          return r.text().then(function (text) {
            return { status: r.status, retryAfter: r.headers.get("Retry-After"), text: text };
          });
        }
      );
    };
  }

  function wxTransport(wxApi) {
    return function (url, body, headers) {
      return new Promise(function (resolve, reject) {
        wxApi.request({
          url: url, method: "POST", data: body, header: headers, dataType: "text",
          success: function (r) {
            var h = r.header || {};
            resolve({ status: r.statusCode, retryAfter: h["Retry-After"] || h["retry-after"], text: r.data });
          },
          fail: reject,
        });
      });
    };
  }

  function Client(options) {
    if (!options || !options.endpoint) throw new Error("LiveCommerce.init: endpoint is required");
    this.url = options.endpoint.replace(/\/+$/, "") + "/v1/events";
    this.appKey = options.appKey || null;
    this.maxBatch = options.maxBatch || 20;
    this.maxQueue = options.maxQueue || 2000;
    this.flushIntervalMs = options.flushIntervalMs || 3000;
    this.baseBackoffMs = options.baseBackoffMs || 1000;
    this.maxBackoffMs = options.maxBackoffMs || 60000;
    this.onRejected = options.onRejected || function () {};
    this.onError = options.onError || function () {};
    this.onDropped = options.onDropped || function () {};
    this.now = options.now || function () { return Date.now(); };
    this.setTimeout = options.setTimeout || setTimeout.bind(null);
    this.clearTimeout = options.clearTimeout || clearTimeout.bind(null);
    var f = options.fetch || (typeof fetch !== "undefined" ? fetch.bind(null) : null);
    this.transport = options.transport ||
      (f ? fetchTransport(f) : typeof wx !== "undefined" && wx.request ? wxTransport(wx) : null);
    if (!this.transport) throw new Error("LiveCommerce.init: no fetch or wx.request; pass options.transport");
    this.beacon = options.sendBeacon ||
      (typeof navigator !== "undefined" && navigator.sendBeacon ? navigator.sendBeacon.bind(navigator) : null);
    this.queue = [];       // events not yet in an upload
    this.inFlight = null;  // the upload being sent or waiting for its retry (same events every time)
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
    this._schedule(this.flushIntervalMs);
    var self = this;
    if (options.watchPage !== false && typeof document !== "undefined" && document.addEventListener) {
      document.addEventListener("visibilitychange", function () {
        if (document.visibilityState === "hidden") self.flushOnHide();
      });
      if (typeof addEventListener !== "undefined") addEventListener("pagehide", function () { self.flushOnHide(); });
    }
  }

  /** Queue one event of `type` with `fields`; returns the event (with its event_id and ts). */
  Client.prototype.track = function (type, fields) {
    var ev = { event_id: uuid(), type: type, ts: this.now() };
    for (var k in fields) if (Object.prototype.hasOwnProperty.call(fields, k)) ev[k] = fields[k];
    if (this.queue.length >= this.maxQueue) this.onDropped(this.queue.shift()); // oldest first: bounded memory
    this.queue.push(ev);
    if (this.queue.length >= this.maxBatch && !this.inFlight) this.flush();
    return ev;
  };

  Client.prototype._schedule = function (ms) {
    var self = this;
    if (this.timer !== null) this.clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = this.setTimeout(function () {
      self.timer = null;
      if (self.inFlight || self.queue.length) self.flush();
      else self._schedule(self.flushIntervalMs);
    }, ms);
  };

  /** Send what is buffered now (or retry the pending upload); resolves when that upload is settled. */
  Client.prototype.flush = function () {
    if (this.sending) return this.sending;
    if (!this.inFlight) {
      if (!this.queue.length) return Promise.resolve();
      this.inFlight = this.queue.splice(0, this.maxBatch);
      this.attempt = 0;
    }
    var self = this, events = this.inFlight;
    var headers = { "Content-Type": "application/json" };
    if (this.appKey) headers["X-App-Key"] = this.appKey;
    this.sending = this.transport(this.url, serialize(events), headers, false).then(
      function (r) { return self._answered(events, r); },
      function () { return self._retryLater(null); } // network error: the same events again
    ).then(function () { self.sending = null; }, function (e) { self.sending = null; self.onError(e); });
    return this.sending;
  };

  Client.prototype._answered = function (events, r) {
    if (r.status === 200) {
      var doc = {};
      try { doc = JSON.parse(r.text); } catch (e) { /* a 200 is an acceptance whatever its body */ }
      var results = doc.results || [];
      for (var i = 0; i < results.length; i++) {
        if (results[i].status !== "accepted") this.onRejected(events[i], results[i].reason, results[i].message);
      }
      this.inFlight = null;
      this.attempt = 0;
      this._schedule(this.queue.length >= this.maxBatch ? 0 : this.flushIntervalMs);
      return;
    }
    if (r.status === 429 || r.status === 503 || r.status === 502 || r.status === 504 || r.status >= 500) {
      return this._retryLater(r.retryAfter);
    }
    // 400/401/413/415: this upload can never succeed; drop it, keep going with the rest.
    this.inFlight = null;
    this.onError(new Error("collector refused an upload of " + events.length + " events: HTTP " + r.status + " " +
      (r.text || "").slice(0, 200)));
    this._schedule(this.flushIntervalMs);
  };

  Client.prototype._retryLater = function (retryAfter) {
    var cap = Math.min(this.maxBackoffMs, this.baseBackoffMs * Math.pow(2, this.attempt));
    var wait = cap / 2 + Math.random() * cap / 2;
    var server = retryAfter && /^[0-9]+$/.test(retryAfter) ? Number(retryAfter) * 1000 : 0;
    this.attempt += 1;
    this._schedule(Math.max(wait, server));
  };

  /** The page is going away: send everything buffered with keepalive requests (fire and forget). */
  Client.prototype.flushOnHide = function () {
    var events = (this.inFlight || []).concat(this.queue);
    if (!events.length) return;
    this.inFlight = null;
    this.queue = [];
    var headers = { "Content-Type": "application/json" };
    if (this.appKey) headers["X-App-Key"] = this.appKey;
    var chunks = [[]], size = 2;
    for (var i = 0; i < events.length; i++) {
      var n = serialize([events[i]]).length;
      if (size + n > KEEPALIVE_MAX_BYTES && chunks[chunks.length - 1].length) { chunks.push([]); size = 2; }
      chunks[chunks.length - 1].push(events[i]);
      size += n;
    }
    var self = this;
    chunks.forEach(function (chunk) {
      var body = serialize(chunk);
      if (self.beacon && !self.preferFetchOnHide) {
        // sendBeacon cannot set headers: text/plain avoids a CORS preflight, the key goes in the URL.
        var url = self.url + (self.appKey ? "?app_key=" + encodeURIComponent(self.appKey) : "");
        var blob = typeof Blob !== "undefined" ? new Blob([body], { type: "text/plain" }) : body;
        if (self.beacon(url, blob)) return;
      }
      self.transport(self.url, body, headers, true).then(null, function () {
        self.queue = chunk.concat(self.queue); // still here (the page came back): keep them
      });
    });
  };

  /** Stop the timer and send what is left (one try per upload, a few more for failures); resolves when
   * done. Events still not sent afterwards stay in `queue` / `inFlight`. */
  Client.prototype.shutdown = function () {
    var self = this, tries = 0, limit = 3 + Math.ceil(this.queue.length / this.maxBatch);
    this.closed = true;
    if (this.timer !== null) this.clearTimeout(this.timer);
    function drain() {
      if ((!self.inFlight && !self.queue.length) || tries++ >= limit) return Promise.resolve();
      return self.flush().then(drain);
    }
    return drain();
  };

  return {
    init: function (options) { return new Client(options); },
    Client: Client,
    serialize: serialize,
    uuid: uuid,
  };
});

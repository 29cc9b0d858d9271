-- wrk script for the collector: each request is one phone's upload of EVENTS views (default 5) with
-- unique event_ids, ts = now, rooms skewed towards the first ones (a few head rooms carry most events).
-- wrk -t1 -c64 -d30s --latency -s load_tests/collector.lua http://127.0.0.1:8088/v1/events
local events = tonumber(os.getenv("EVENTS") or "5")
local rooms = tonumber(os.getenv("ROOMS") or "1000")
local counter, tag = 0, 0

function setup(thread)
  tag = tag + 1
  thread:set("tag", tag)
end

function init(args)
  math.randomseed(tag or 1)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local ts = os.time() * 1000
  local parts = {}
  for i = 1, events do
    counter = counter + 1
    local r = math.random()
    local room = math.floor(r * r * rooms) + 1  -- small ids: LuaJIT numbers are doubles
    parts[i] = string.format(
      '{"event_id":"w%d-%d","type":"view","ts":%d,"room_id":%d,"creator_id":%d,"user_id":%d,"source":"live_feed"}',
      tag or 1, counter, ts, room, (room % 300) + 1, math.random(1, 1000000))
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")
end
-- No response() callback: wrk reports non-2xx answers itself, and the callback would slow it down.

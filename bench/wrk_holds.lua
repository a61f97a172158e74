-- wrk load for bench/flash_sale.py: POST /api/sales/{id}/holds from many buyers.
--
--   wrk -t1 -c2000 -d10s -s bench/wrk_holds.lua http://127.0.0.1:PORT -- TOKENS SALE_ID [THINK_MS]
--
-- TOKENS is a file of bearer tokens, one per line (one per buyer). With THINK_MS each connection
-- pauses a random 0..2×THINK_MS before each request (a buyer looking at the screen); without it
-- requests go back-to-back (the saturation test). Each request takes the next
-- token of its thread and a fresh Idempotency-Key, so every request is a new reservation of one
-- unit. wrk is C: it costs the 2-core box a fraction of what Python clients do, which leaves the
-- cores to the server being measured. done() prints one line, "WRK {json}", for the bench.
--
-- The line also carries a timeline: wrk's own statistics give one distribution for the whole
-- run, which cannot tell a stall every few seconds from a slow steady state. Each request sends
-- an X-Request-Id the server echoes (its own id otherwise), so response() can find when that
-- request was written and file its latency under the 100 ms slice of the run it finished in.
-- Times are CLOCK_MONOTONIC (LuaJIT's ffi), the clock Python's time.monotonic() reads, so the
-- slices line up with anything the server records.

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } linli_timespec;
  int clock_gettime(int clock, linli_timespec *ts);
]]
local CLOCK_MONOTONIC = 1
local clock_buf = ffi.new("linli_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock_buf)
  return tonumber(clock_buf.tv_sec) * 1000000 + math.floor(tonumber(clock_buf.tv_nsec) / 1000)
end

local tokens = {}
local next_token = 0
statuses = {}  -- a global: done() reads it from each thread (thread:get)
-- Globals for done(): per response its slice (100 ms since the thread's first request) and its
-- latency in µs, and that first request's time. Two flat arrays, because wrk's thread:get
-- corrupts its stack copying a table inside a table. A 180 s run at 2,000 requests a second
-- keeps ~360,000 pairs, a few MB.
done_slice = {}
done_us = {}
first_us = 0
local done_n = 0
local sent = {}  -- request id → when it was written (µs)
local path = ""
local serial = 0
local thread_id = 0
local threads = {}
local counter = 0
local think_ms = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  path = "/api/sales/" .. args[2] .. "/holds"
  think_ms = tonumber(args[3] or "0")
  math.randomseed(tid * 104729)
  thread_id = tid
  -- Spread the threads over the token list so they do not all start on the same buyer.
  next_token = (tid * 7919) % #tokens
end

function request()
  next_token = next_token % #tokens + 1
  serial = serial + 1
  -- Padded: the server takes a caller's request id only from 8 characters on.
  local id = string.format("wrk-%d-%08d", thread_id, serial)
  -- wrk calls request() just before it writes the request and starts its own clock.
  local now = now_us()
  if first_us == 0 then
    first_us = now
  end
  sent[id] = now
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[next_token],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id,
    ["X-Request-Id"] = id,
  }
  return wrk.format("POST", path, headers, '{"qty": 1}')
end

function delay()
  if think_ms > 0 then
    return math.random(0, 2 * think_ms)
  end
  return 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local id = headers["X-Request-Id"]
  local started = id and sent[id]
  if started then
    sent[id] = nil
    local now = now_us()
    done_n = done_n + 1
    local n = done_n
    done_slice[n] = math.floor((now - first_us) / 100000)
    done_us[n] = now - started
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then
    return 0
  end
  return sorted[math.max(1, math.ceil(#sorted * p / 100))]
end

function done(summary, latency, requests)
  local counts = {}
  local merged = {}  -- slice → every thread's latencies
  local first = nil
  for _, thread in ipairs(threads) do
    local per = thread:get("statuses")
    for status, n in pairs(per) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
    local t0 = thread:get("first_us")
    if t0 > 0 and (first == nil or t0 < first) then
      first = t0
    end
  end
  for _, thread in ipairs(threads) do
    local t0 = thread:get("first_us")
    local shift = first and math.floor((t0 - first) / 100000) or 0
    local at, took = thread:get("done_slice"), thread:get("done_us")
    for i = 1, #took do
      local slice = at[i] + shift
      local into = merged[slice]
      if into == nil then
        into = {}
        merged[slice] = into
      end
      into[#into + 1] = took[i]
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%s": %d', status, n)
  end
  -- [index, count, p50 µs, p99 µs, max µs] per 100 ms slice, and per second, that saw a response.
  local function rows(groups)
    local out, last = {}, -1
    for index, _ in pairs(groups) do
      if index > last then
        last = index
      end
    end
    for index = 0, last do
      local list = groups[index]
      if list ~= nil then
        table.sort(list)
        out[#out + 1] = string.format("[%d, %d, %d, %d, %d]", index, #list,
          percentile(list, 50), percentile(list, 99), list[#list])
      end
    end
    return table.concat(out, ", ")
  end
  local seconds = {}
  for slice, list in pairs(merged) do
    local second = math.floor(slice / 10)
    local into = seconds[second] or {}
    for _, v in ipairs(list) do
      into[#into + 1] = v
    end
    seconds[second] = into
  end
  local timeline, per_second = rows(merged), rows(seconds)
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "socket_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d, "statuses": {%s}, "first_us": %d, ' ..
    '"timeline": [%s], "seconds": [%s]}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max,
    table.concat(parts, ", "), first or 0, timeline, per_second))
end

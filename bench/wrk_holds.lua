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

local tokens = {}
local next_token = 0
statuses = {}  -- a global: done() reads it from each thread (thread:get)
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
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[next_token],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "wrk-" .. thread_id .. "-" .. serial,
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
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local per = thread:get("statuses")
    for status, n in pairs(per) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%s": %d', status, n)
  end
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "socket_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end

-- close.lua: stop new reservations; live holds may still be paid until they expire.
-- KEYS[1] sale:{id}:meta
-- KEYS[2] sale:{id}:idem  the idempotency answers grow with every attempt; once the sale is
--         closed they are kept ARGV[2] more seconds (retries of a late client still get their
--         first answer), then Redis drops them
-- ARGV[1] now (ms)  ARGV[2] seconds to keep the idempotency answers
-- returns cjson {closed=1|0 (0: was already closed or unknown), remaining, held, sold, ver}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return cjson.encode({closed = 0}) end
local closed = 0
if status ~= 'closed' then
  redis.call('HSET', KEYS[1], 'status', 'closed', 'closed_at', ARGV[1])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  closed = 1
end
local m = redis.call('HMGET', KEYS[1], 'remaining', 'held', 'sold', 'ver')
return cjson.encode({closed = closed, remaining = tonumber(m[1]), held = tonumber(m[2]),
  sold = tonumber(m[3]), ver = tonumber(m[4] or '0')})

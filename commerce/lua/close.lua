-- close.lua: stop new reservations; live holds may still be paid until they expire.
-- KEYS[1] sale:{id}:meta
-- ARGV[1] now (ms)
-- returns cjson {closed=1|0 (0: was already closed or unknown), remaining, held, sold}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return cjson.encode({closed = 0}) end
local closed = 0
if status ~= 'closed' then
  redis.call('HSET', KEYS[1], 'status', 'closed', 'closed_at', ARGV[1])
  closed = 1
end
local m = redis.call('HMGET', KEYS[1], 'remaining', 'held', 'sold')
return cjson.encode({closed = closed, remaining = tonumber(m[1]), held = tonumber(m[2]),
  sold = tonumber(m[3])})

-- expire.lua: return every hold whose expiry has passed to stock (the sweeper calls this).
-- Holds are found through the expiry sorted set, so none is ever lost or returned twice.
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:holds  KEYS[3] sale:{id}:expiry
-- KEYS[4] sale:{id}:bought  KEYS[5] sale:{id}:community  (see reserve.lua)
-- ARGV[1] now (ms)  ARGV[2] at most this many holds per call (bounds the script's run time)
-- returns cjson {expired=n, remaining, held, sold, communities={cid=[people, units]}, ver}; ver
--   is the sale's version after this call, incremented when a hold went back
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local touched = {}
local returned = 0
for _, hold in ipairs(due) do
  redis.call('ZREM', KEYS[3], hold)
  local raw = redis.call('HGET', KEYS[2], hold)
  if raw then
    local h = cjson.decode(raw)
    returned = returned + 1
    redis.call('HDEL', KEYS[2], hold)
    redis.call('HINCRBY', KEYS[1], 'remaining', h.q)
    redis.call('HINCRBY', KEYS[1], 'held', -h.q)
    if redis.call('HINCRBY', KEYS[4], h.b, -h.q) <= 0 then redis.call('HDEL', KEYS[4], h.b) end
    if h.c ~= '' then
      if redis.call('HINCRBY', KEYS[5], 'b:' .. h.c .. ':' .. h.b, -h.q) <= 0 then
        redis.call('HDEL', KEYS[5], 'b:' .. h.c .. ':' .. h.b)
        redis.call('HINCRBY', KEYS[5], 'p:' .. h.c, -1)
      end
      redis.call('HINCRBY', KEYS[5], 'u:' .. h.c, -h.q)
      touched[h.c] = true
    end
  end
end
local communities = {}
for c, _ in pairs(touched) do
  communities[c] = {tonumber(redis.call('HGET', KEYS[5], 'p:' .. c)),
    tonumber(redis.call('HGET', KEYS[5], 'u:' .. c))}
end
if returned > 0 then redis.call('HINCRBY', KEYS[1], 'ver', 1) end
local m = redis.call('HMGET', KEYS[1], 'remaining', 'held', 'sold', 'ver')
return cjson.encode({expired = #due, remaining = tonumber(m[1]), held = tonumber(m[2]),
  sold = tonumber(m[3]), communities = communities, ver = tonumber(m[4] or '0')})

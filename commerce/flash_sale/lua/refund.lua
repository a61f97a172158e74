-- refund.lua: a paid order was refunded before pickup; its units go back to stock (sold → remaining)
-- and the buyer's allowance is restored. Applied at most once per hold, so the SQL side may
-- retry it (reconcile does, after a crash between SQL and Redis).
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:bought  KEYS[3] sale:{id}:community
-- KEYS[4] sale:{id}:refunded  hash: hold id -> "1"
-- ARGV[1] hold id  ARGV[2] buyer id  ARGV[3] qty  ARGV[4] community id or ""
-- returns cjson {ok=1, again=0|1, remaining, held, sold, people, units, ver}
local q = tonumber(ARGV[3])
local again = 1
local people, units = 0, 0
if redis.call('HSETNX', KEYS[4], ARGV[1], '1') == 1 then
  again = 0
  redis.call('HINCRBY', KEYS[1], 'sold', -q)
  redis.call('HINCRBY', KEYS[1], 'remaining', q)
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -q) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
  local c = ARGV[4]
  if c ~= '' then
    if redis.call('HINCRBY', KEYS[3], 'b:' .. c .. ':' .. ARGV[2], -q) <= 0 then
      redis.call('HDEL', KEYS[3], 'b:' .. c .. ':' .. ARGV[2])
      people = redis.call('HINCRBY', KEYS[3], 'p:' .. c, -1)
    else
      people = tonumber(redis.call('HGET', KEYS[3], 'p:' .. c))
    end
    units = redis.call('HINCRBY', KEYS[3], 'u:' .. c, -q)
  end
end
local m = redis.call('HMGET', KEYS[1], 'remaining', 'held', 'sold', 'ver')
return cjson.encode({ok = 1, again = again, remaining = tonumber(m[1]), held = tonumber(m[2]),
  sold = tonumber(m[3]), people = people, units = units, ver = tonumber(m[4] or '0')})

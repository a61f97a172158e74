-- release.lua: the buyer (or staff) gives a live hold back; its units return to stock.
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:holds  KEYS[3] sale:{id}:expiry
-- KEYS[4] sale:{id}:bought  KEYS[5] sale:{id}:community  (see reserve.lua)
-- ARGV[1] hold id  ARGV[2] buyer id, or "" for staff and the system
-- returns cjson {ok=1, qty, community, remaining, held, sold, people, units, ver}
--   or {err="no_hold"|"not_yours"}
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return cjson.encode({err = 'no_hold'}) end
local h = cjson.decode(raw)
if ARGV[2] ~= '' and h.b ~= ARGV[2] then return cjson.encode({err = 'not_yours'}) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', h.q)
local held = redis.call('HINCRBY', KEYS[1], 'held', -h.q)
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
if redis.call('HINCRBY', KEYS[4], h.b, -h.q) <= 0 then redis.call('HDEL', KEYS[4], h.b) end
local people, units = 0, 0
if h.c ~= '' then
  people = tonumber(redis.call('HGET', KEYS[5], 'p:' .. h.c) or '0')
  if redis.call('HINCRBY', KEYS[5], 'b:' .. h.c .. ':' .. h.b, -h.q) <= 0 then
    redis.call('HDEL', KEYS[5], 'b:' .. h.c .. ':' .. h.b)
    people = redis.call('HINCRBY', KEYS[5], 'p:' .. h.c, -1)
  end
  units = redis.call('HINCRBY', KEYS[5], 'u:' .. h.c, -h.q)
end
return cjson.encode({ok = 1, qty = h.q, community = h.c, remaining = remaining, held = held,
  sold = tonumber(redis.call('HGET', KEYS[1], 'sold')), people = people, units = units, ver = ver})

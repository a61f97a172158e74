-- bucket_refund.lua: a paid hold of one bucket was refunded before pickup: its units go back to
-- the bucket's stock (sold -> remaining), once per hold, so the SQL side may retry it. The
-- buyer's allowance is given back from `back` (as for a released hold: bucket_give.lua with the
-- hold id, once; whatever a dead worker left listed there, the sweeper gives).
-- KEYS[1] bsale:{T}:meta  KEYS[2] bsale:{T}:paid  KEYS[3] bsale:{T}:back  (see bucket_release.lua)
-- KEYS[4] bsale:{T}:refunded  hash: hold id -> the paid record it had
-- ARGV[1] hold id
-- returns cjson {ok=1, again=0|1, buyer, qty} or {err="no_hold"} (never paid in this bucket)
local before = redis.call('HGET', KEYS[4], ARGV[1])
if before then
  local p = cjson.decode(before)
  return cjson.encode({ok = 1, again = 1, buyer = p.b, qty = p.q})
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return cjson.encode({err = 'no_hold'}) end
local p = cjson.decode(raw)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], raw)
redis.call('HINCRBY', KEYS[1], 'sold', -p.q)
redis.call('HINCRBY', KEYS[1], 'remaining', p.q)
redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[3], ARGV[1], p.b .. ':' .. p.q)
return cjson.encode({ok = 1, again = 0, buyer = p.b, qty = p.q})

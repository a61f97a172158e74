-- bucket_confirm.lua: a live hold of one bucket is paid (held -> sold); repeats answer again=1.
-- KEYS[1] bsale:{T}:meta  KEYS[2] bsale:{T}:holds  KEYS[3] bsale:{T}:expiry
-- KEYS[4] bsale:{T}:paid  hash: hold id -> cjson {b, q, ref, c community, p unit price, at ms}
-- KEYS[5] bsale:{T}:unlogged (optional) zset: paid holds whose sale-wide step (bucket_paid.lua:
--         payment rank, order log) is not known to be done, scored by when they were paid; the
--         app's sweeper finishes those a dead worker left
-- ARGV[1] hold id  ARGV[2] buyer or "" (staff)  ARGV[3] payment reference  ARGV[4] now (ms)
-- ARGV[5] unit price charged (fen; optional, else the hold's quote)
-- returns cjson {ok=1, again=0|1, buyer, qty, ref, community, price, at}
--   or {err="no_hold"|"not_yours"|"expired"}; a repeat answers the first payment's ref and price
local paid = redis.call('HGET', KEYS[4], ARGV[1])
if paid then
  local p = cjson.decode(paid)
  if ARGV[2] ~= '' and p.b ~= ARGV[2] then return cjson.encode({err = 'not_yours'}) end
  return cjson.encode({ok = 1, again = 1, buyer = p.b, qty = p.q, ref = p.ref,
    community = p.c or '', price = p.p or 0, at = p.at or 0})
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return cjson.encode({err = 'no_hold'}) end
local h = cjson.decode(raw)
if ARGV[2] ~= '' and h.b ~= ARGV[2] then return cjson.encode({err = 'not_yours'}) end
if tonumber(ARGV[4]) >= h.e then return cjson.encode({err = 'expired'}) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'held', -h.q)
redis.call('HINCRBY', KEYS[1], 'sold', h.q)
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local price = tonumber(ARGV[5] or '') or h.p or 0
local at = tonumber(ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode({b = h.b, q = h.q, ref = ARGV[3],
  c = h.c or '', p = price, at = at}))
if KEYS[5] then redis.call('ZADD', KEYS[5], at, ARGV[1]) end
return cjson.encode({ok = 1, again = 0, buyer = h.b, qty = h.q, ref = ARGV[3],
  community = h.c or '', price = price, at = at})

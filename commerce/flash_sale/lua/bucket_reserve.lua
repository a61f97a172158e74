-- bucket_reserve.lua: hold QTY units from one bucket, if it has them (the buyer's allowance
-- was already counted by bucket_take.lua). Idempotent per (buyer, key): a retry after a lost
-- answer finds its hold again instead of holding twice.
-- KEYS[1] bsale:{T}:meta  (see bucket_open.lua)
-- KEYS[2] bsale:{T}:holds   hash: hold id -> cjson {b buyer, q qty, e expiry ms, k key,
--                             c community id or "", p unit price quoted (fen)}
-- KEYS[3] bsale:{T}:expiry  zset: hold id scored by expiry (ms)
-- KEYS[4] bsale:{T}:keys    hash: buyer:key -> hold id (every hold this bucket made)
-- ARGV[1] now (ms)  ARGV[2] buyer  ARGV[3] qty  ARGV[4] idempotency key
-- ARGV[5] community the buyer buys through or "" (optional)  ARGV[6] unit price (optional)
-- Hold ids are `<sale>-<seq × buckets + bucket>`: the same shape as unbucketed holds, and the
-- bucket is the number modulo the bucket count.
-- `ver` counts this bucket's changes (every bucket script that moves its counters bumps it): the
-- sale's version is the sum over its buckets and its meta (see commerce/flash_sale/stock.py).
-- returns cjson {ok=1, hold, qty, expires, remaining (this bucket's), community, price} or
--   {err="unknown"|"ended"|"not_open"|"empty"}
local m = redis.call('HMGET', KEYS[1], 'sale', 'bucket', 'buckets', 'status', 'starts', 'ends',
  'ttl', 'remaining')
if not m[4] then return cjson.encode({err = 'unknown'}) end
local now, qty = tonumber(ARGV[1]), tonumber(ARGV[3])
local made = redis.call('HGET', KEYS[4], ARGV[2] .. ':' .. ARGV[4])
if made then
  local raw = redis.call('HGET', KEYS[2], made)
  local h = raw and cjson.decode(raw) or {q = qty, e = 0}
  return cjson.encode({ok = 1, hold = made, qty = h.q, expires = h.e,
    remaining = tonumber(m[8]), again = 1, community = h.c or '', price = h.p or 0})
end
local ends = tonumber(m[6])
if m[4] ~= 'open' or (ends > 0 and now >= ends) then return cjson.encode({err = 'ended'}) end
if tonumber(m[5]) > now then return cjson.encode({err = 'not_open', starts = tonumber(m[5])}) end
if tonumber(m[8]) < qty then return cjson.encode({err = 'empty', remaining = tonumber(m[8])}) end
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -qty)
redis.call('HINCRBY', KEYS[1], 'held', qty)
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local hold = m[1] .. '-' .. (seq * tonumber(m[3]) + tonumber(m[2]))
local expires = now + tonumber(m[7]) * 1000
local community, price = ARGV[5] or '', tonumber(ARGV[6] or '0')
redis.call('HSET', KEYS[2], hold, cjson.encode({b = ARGV[2], q = qty, e = expires, k = ARGV[4],
  c = community, p = price}))
redis.call('ZADD', KEYS[3], expires, hold)
redis.call('HSET', KEYS[4], ARGV[2] .. ':' .. ARGV[4], hold)
return cjson.encode({ok = 1, hold = hold, qty = qty, expires = expires, remaining = remaining,
  community = community, price = price})

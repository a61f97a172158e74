-- bucket_take.lua: the first step of a bucketed reservation, on the buyer's own key (her own
-- slot): count the units against her per-buyer limit before any bucket is asked, so the limit
-- is exact however many buckets serve her. The units stay counted while the reservation is in
-- flight (`p:<key>`); bucket_give.lua takes them back when no bucket had stock.
-- KEYS[1] bsale:{<sale>.u<buyer>}:buyer  hash: n (units held, paid or in flight),
--         a:<key> the stored answer of idempotency key <key>, p:<key> "qty:ms" in flight
-- ARGV[1] idempotency key  ARGV[2] qty  ARGV[3] per-buyer limit  ARGV[4] now (ms)
-- returns cjson {taken=1} | {answer=<the stored answer>} | {err="in_flight"} |
--   {err="over_limit", limit, already} (stored: a retry answers the same)
local seen = redis.call('HGET', KEYS[1], 'a:' .. ARGV[1])
if seen then return cjson.encode({answer = seen}) end
if redis.call('HEXISTS', KEYS[1], 'p:' .. ARGV[1]) == 1 then
  return cjson.encode({err = 'in_flight'})
end
local qty, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local mine = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if mine + qty > limit then
  local answer = cjson.encode({err = 'over_limit', limit = limit, already = mine})
  redis.call('HSET', KEYS[1], 'a:' .. ARGV[1], answer)
  return cjson.encode({answer = answer})
end
redis.call('HINCRBY', KEYS[1], 'n', qty)
redis.call('HSET', KEYS[1], 'p:' .. ARGV[1], qty .. ':' .. ARGV[4])
return cjson.encode({taken = 1})

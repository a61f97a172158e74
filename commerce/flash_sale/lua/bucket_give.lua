-- bucket_give.lua: units go back to the buyer's allowance (see bucket_take.lua): a reservation
-- no bucket could serve, or a hold released, expired or refunded. With an idempotency key the
-- in-flight mark goes too (only if still there: a repeat gives nothing back twice); with an
-- answer, it is stored for retries. With a hold id instead (a hold that went back to its
-- bucket), once per hold: `g:<hold>` remembers it was given.
-- KEYS[1] bsale:{<sale>.u<buyer>}:buyer
-- ARGV[1] qty  ARGV[2] idempotency key or ""  ARGV[3] answer to store or ""
-- ARGV[4] hold id or ""
-- returns the buyer's units after the call
local qty = tonumber(ARGV[1])
if ARGV[4] and ARGV[4] ~= '' then
  if redis.call('HSETNX', KEYS[1], 'g:' .. ARGV[4], 1) == 0 then
    return tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
  end
elseif ARGV[2] ~= '' then
  if redis.call('HDEL', KEYS[1], 'p:' .. ARGV[2]) == 0 then
    return tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
  end
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'a:' .. ARGV[2], ARGV[3]) end
end
local n = redis.call('HINCRBY', KEYS[1], 'n', -qty)
if n < 0 then
  redis.call('HSET', KEYS[1], 'n', 0)
  n = 0
end
return n

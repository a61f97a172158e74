-- bucket_release.lua: live holds of one bucket go back to its stock: one hold by id (a buyer
-- or staff gives it back), or every hold whose expiry has passed (the sweeper).
-- KEYS[1] bsale:{T}:meta  KEYS[2] bsale:{T}:holds  KEYS[3] bsale:{T}:expiry
-- KEYS[4] bsale:{T}:back  hash: hold id -> "buyer:qty", holds whose units this bucket took back
--         and whose buyer's allowance is not yet known to be given back (bucket_give.lua with
--         the hold id is once-only, so the sweeper gives again whatever is listed here)
-- ARGV[1] "hold" | "expired"
-- hold:    ARGV[2] hold id  ARGV[3] buyer or "" (staff and the system)
-- expired: ARGV[2] now (ms)  ARGV[3] at most this many holds (bounds the script's run time)
-- returns cjson {ok=1, back={{buyer, qty, key}, ...}, remaining} or {err="no_hold"|"not_yours"}
local due
if ARGV[1] == 'hold' then
  local raw = redis.call('HGET', KEYS[2], ARGV[2])
  if not raw then return cjson.encode({err = 'no_hold'}) end
  if ARGV[3] ~= '' and cjson.decode(raw).b ~= ARGV[3] then
    return cjson.encode({err = 'not_yours'})
  end
  due = {ARGV[2]}
else
  due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
end
local back = {}
for _, hold in ipairs(due) do
  redis.call('ZREM', KEYS[3], hold)
  local raw = redis.call('HGET', KEYS[2], hold)
  if raw then
    local h = cjson.decode(raw)
    redis.call('HDEL', KEYS[2], hold)
    redis.call('HINCRBY', KEYS[1], 'remaining', h.q)
    redis.call('HINCRBY', KEYS[1], 'held', -h.q)
    redis.call('HSET', KEYS[4], hold, h.b .. ':' .. h.q)
    back[#back + 1] = {h.b, h.q, hold}
  end
end
if #back > 0 then redis.call('HINCRBY', KEYS[1], 'ver', 1) end
local out = {ok = 1, remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining'))}
if #back > 0 then out.back = back end
return cjson.encode(out)

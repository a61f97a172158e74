-- reserve.lua: hold QTY units of one flash sale for one buyer, atomically.
-- Every key shares the sale's hash tag, so the script runs unchanged on Redis Cluster.
-- KEYS[1] sale:{id}:meta      hash: id status starts ends initial remaining held sold limit price
--                                   cprice members_only ttl seq paid gift_n session
-- KEYS[2] sale:{id}:holds     hash: hold id -> cjson {b buyer, q qty, c community, p unit price,
--                                   e expiry ms, k idempotency key}
-- KEYS[3] sale:{id}:expiry    zset: hold id scored by expiry (ms), read by the sweeper
-- KEYS[4] sale:{id}:bought    hash: buyer -> units held or paid (the per-buyer limit)
-- KEYS[5] sale:{id}:idem      hash: buyer:key -> the first answer (kept for the sale's lifetime)
-- KEYS[6] sale:{id}:members   hash: buyer -> ",cid,cid," communities of the sale they belong to
-- KEYS[7] sale:{id}:community hash: u:cid units, p:cid people, b:cid:buyer units of one buyer
-- KEYS[8] sale:{id}:groups    hash: cid -> cjson summary of the community's group-buy
-- ARGV[1] now (ms since epoch, from the caller so replicas replay the same effects)
-- then one group of four per reservation, applied in order (a batch of one is a single call;
-- a process gathers concurrent requests into one call to save round trips):
-- ARGV[2+4i] buyer id  ARGV[3+4i] qty (>0)  ARGV[4+4i] community id or ""
-- ARGV[5+4i] idempotency key
-- returns one answer per reservation, each a cjson string: {ok=1, hold, qty, expires, remaining,
--   held, sold, rank, price, community, gift_left, list, cprice, people, units, group, session,
--   ver} or
--   {err="unknown"|
--   "not_open"|"ended"|"not_member"|"over_limit"|"sold_out"}. Holds, "sold_out" and
--   "over_limit" are stored under the idempotency key and returned again on a retry; "unknown",
--   "not_open" and "not_member" are not (nothing happened, and time or an approved membership
--   will change them), nor "ended" (final for everyone; see below).
local now = tonumber(ARGV[1])

local function reserve_one(buyer, qty, want, key)
  local idem_field = buyer .. ':' .. key
  local seen = redis.call('HGET', KEYS[5], idem_field)
  if seen then return seen end

  local m = redis.call('HMGET', KEYS[1], 'id', 'status', 'starts', 'ends', 'remaining', 'limit',
    'price', 'cprice', 'members_only', 'ttl', 'sold', 'gift_n', 'paid', 'session')
  if not m[2] then return cjson.encode({err = 'unknown'}) end
  local function answer(t)
    local s = cjson.encode(t)
    redis.call('HSET', KEYS[5], idem_field, s)
    return s
  end
  local ends = tonumber(m[4])
  -- Not stored: an ended sale answers "ended" to everyone forever anyway, and storing would
  -- grow the idempotency hash after close.lua gave it an expiry.
  if m[2] ~= 'open' or (ends > 0 and now >= ends) then return cjson.encode({err = 'ended'}) end
  if tonumber(m[3]) > now then return cjson.encode({err = 'not_open', starts = tonumber(m[3])}) end

  -- Community: an explicit one must be the buyer's; otherwise the buyer's first one, if any.
  local home = redis.call('HGET', KEYS[6], buyer)
  local community = ''
  if want ~= '' then
    if not home or not string.find(home, ',' .. want .. ',', 1, true) then
      return cjson.encode({err = 'not_member'})
    end
    community = want
  elseif home then
    community = string.match(home, '^,(%d+),') or ''
  end
  if m[9] == '1' and community == '' then return cjson.encode({err = 'not_member'}) end

  -- Check before decrement: stock never goes below zero, not even inside the script.
  local limit = tonumber(m[6])
  local mine = tonumber(redis.call('HGET', KEYS[4], buyer) or '0')
  if mine + qty > limit then return answer({err = 'over_limit', limit = limit, already = mine}) end
  if tonumber(m[5]) < qty then return answer({err = 'sold_out', remaining = tonumber(m[5])}) end

  local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -qty)
  local held = redis.call('HINCRBY', KEYS[1], 'held', qty)
  redis.call('HINCRBY', KEYS[4], buyer, qty)
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
  local hold = m[1] .. '-' .. seq
  local price = tonumber(m[7])
  if community ~= '' and m[8] ~= '' then price = tonumber(m[8]) end
  local expires = now + tonumber(m[10]) * 1000
  redis.call('HSET', KEYS[2], hold,
    cjson.encode({b = buyer, q = qty, c = community, p = price, e = expires, k = key}))
  redis.call('ZADD', KEYS[3], expires, hold)

  local people, units = 0, 0
  local group = false
  if community ~= '' then
    if redis.call('HINCRBY', KEYS[7], 'b:' .. community .. ':' .. buyer, qty) == qty then
      people = redis.call('HINCRBY', KEYS[7], 'p:' .. community, 1)
    else
      people = tonumber(redis.call('HGET', KEYS[7], 'p:' .. community))
    end
    units = redis.call('HINCRBY', KEYS[7], 'u:' .. community, qty)
    group = redis.call('HGET', KEYS[8], community) or false
  end
  local gift_left = math.max(0, tonumber(m[12]) - tonumber(m[13]))
  return answer({ok = 1, hold = hold, qty = qty, expires = expires, remaining = remaining,
    held = held, sold = tonumber(m[11]), rank = seq, price = price, community = community, gift_left = gift_left,
    list = tonumber(m[7]), cprice = m[8],
    people = people, units = units, group = group, session = tonumber(m[14]), ver = ver})
end

local answers = {}
for i = 2, #ARGV, 4 do
  answers[#answers + 1] = reserve_one(ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3])
end
return answers

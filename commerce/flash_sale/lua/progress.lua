-- progress.lua: a sale's counters and every group-buy's progress, read in one atomic step with
-- the version they belong to (what the room is told after a burst, or when a sale closes).
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:community  KEYS[3] sale:{id}:groups  (see reserve.lua)
-- returns cjson {ver, session, status, remaining, held, sold, paid, gift_n,
--   groups={cid={people, units, summary}}} or {err="unknown"}
local m = redis.call('HMGET', KEYS[1], 'ver', 'session', 'status', 'remaining', 'held', 'sold',
  'paid', 'gift_n')
if not m[3] then return cjson.encode({err = 'unknown'}) end
local groups = {}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local c = all[i]
  local counts = redis.call('HMGET', KEYS[2], 'p:' .. c, 'u:' .. c)
  groups[c] = {people = tonumber(counts[1] or '0'), units = tonumber(counts[2] or '0'),
    summary = all[i + 1]}
end
local out = {ver = tonumber(m[1] or '0'), session = tonumber(m[2]), status = m[3],
  remaining = tonumber(m[4]), held = tonumber(m[5]), sold = tonumber(m[6]),
  paid = tonumber(m[7]), gift_n = tonumber(m[8])}
if next(groups) ~= nil then out.groups = groups end
return cjson.encode(out)

-- snapshot.lua: read a sale's counts and its live holds in one atomic step (for reconcile), so
-- a reservation landing between two reads can never look like drift.
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:holds  (see reserve.lua)
-- returns cjson {initial, remaining, held, sold, paid, gift_n, status, hold_units, holds} or
--   {err="unknown"}; holds is the number of live holds (expired but not yet swept included)
local m = redis.call('HMGET', KEYS[1], 'initial', 'remaining', 'held', 'sold', 'paid', 'gift_n',
  'status')
if not m[1] then return cjson.encode({err = 'unknown'}) end
local units, count = 0, 0
local all = redis.call('HVALS', KEYS[2])
for _, raw in ipairs(all) do
  units = units + cjson.decode(raw).q
  count = count + 1
end
return cjson.encode({initial = tonumber(m[1]), remaining = tonumber(m[2]), held = tonumber(m[3]),
  sold = tonumber(m[4]), paid = tonumber(m[5]), gift_n = tonumber(m[6]), status = m[7],
  hold_units = units, holds = count})

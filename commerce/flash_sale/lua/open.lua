-- open.lua: put a sale's stock into Redis. Idempotent: a sale already present keeps its counts
-- (a restart or a second worker must never reset stock that is being sold).
-- KEYS[1] sale:{id}:meta  (see reserve.lua for its fields)
-- ARGV[1] id  ARGV[2] initial stock  ARGV[3] price  ARGV[4] community price or ""
-- ARGV[5] members only "1"|"0"  ARGV[6] per-buyer limit  ARGV[7] first-N gift count
-- ARGV[8] starts (ms)  ARGV[9] ends (ms, 0 = none)  ARGV[10] hold ttl (s)  ARGV[11] session id
-- ARGV[12] bucket count, or "" / absent for stock in this hash. A bucketed sale's stock lives in
--          its buckets (bucket_open.lua, opened first); this hash keeps the rest of the sale and
--          says `buckets`, with remaining 0 so that reserve.lua, sent here by mistake, can only
--          answer sold_out, never sell a unit twice.
-- `ver` is the sale's version: every script that changes its counters (remaining, held, sold,
-- paid, a community's people/units, a group-buy's summary) increments it in the same step and
-- returns it, so whoever shows them can tell a later state from an earlier one.
-- returns 1 when created, 0 when it already existed
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local remaining = ARGV[2]
if ARGV[12] and ARGV[12] ~= '' then
  remaining = 0
  redis.call('HSET', KEYS[1], 'buckets', ARGV[12])
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'status', 'open', 'initial', ARGV[2],
  'remaining', remaining, 'held', 0, 'sold', 0, 'price', ARGV[3], 'cprice', ARGV[4],
  'members_only', ARGV[5], 'limit', ARGV[6], 'gift_n', ARGV[7], 'starts', ARGV[8],
  'ends', ARGV[9], 'ttl', ARGV[10], 'session', ARGV[11], 'seq', 0, 'paid', 0, 'ver', 0)
return 1

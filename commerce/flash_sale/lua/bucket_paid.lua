-- bucket_paid.lua: the sale-wide step of a bucketed payment (after bucket_confirm.lua moved the
-- units to sold in their bucket), once per hold, in the sale's own slot: its payment rank (the
-- first gift_n get the gift), the entry in the sale's order log, and the answer that paying
-- again repeats: what confirm.lua does for a sale whose stock is in one hash.
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:paid  KEYS[3] sale:{id}:log  (see confirm.lua)
-- ARGV[1] hold id  ARGV[2] buyer  ARGV[3] qty  ARGV[4] unit price charged (fen)
-- ARGV[5] community id or ""  ARGV[6] payment reference  ARGV[7] paid at (ms)
-- returns cjson {ok=1, hold, buyer, qty, price, community, ref, paid_rank, gift, entry, session,
--   ver} (a repeat answers the first time's answer) or {err="unknown"}
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then return done end
local m = redis.call('HMGET', KEYS[1], 'id', 'gift_n', 'session')
if not m[1] then return cjson.encode({err = 'unknown'}) end
local rank = redis.call('HINCRBY', KEYS[1], 'paid', 1)
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local gift_n = tonumber(m[2])
local gift = 0
if rank <= gift_n then gift = 1 end
local entry = redis.call('XADD', KEYS[3], '*', 'sale', m[1], 'hold', ARGV[1], 'buyer', ARGV[2],
  'qty', ARGV[3], 'price', ARGV[4], 'community', ARGV[5], 'ref', ARGV[6], 'rank', rank,
  'gift', gift, 'at', ARGV[7])
local result = cjson.encode({ok = 1, hold = ARGV[1], buyer = ARGV[2], qty = tonumber(ARGV[3]),
  price = tonumber(ARGV[4]), community = ARGV[5], ref = ARGV[6], paid_rank = rank, gift = gift,
  entry = entry, session = m[3], ver = ver})
redis.call('HSET', KEYS[2], ARGV[1], result)
return result

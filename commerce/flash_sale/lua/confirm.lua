-- confirm.lua: a live hold becomes sold, and the sale's durable log gets the confirmation.
-- The log entry is written by this same script, so Redis never holds a sale that the log lacks;
-- a consumer group carries the log into SQL orders (commerce/flash_sale/order_log.py).
-- KEYS[1] sale:{id}:meta    hash (see reserve.lua)
-- KEYS[2] sale:{id}:holds   hash: hold id -> cjson hold
-- KEYS[3] sale:{id}:expiry  zset: hold id -> expiry ms
-- KEYS[4] sale:{id}:paid    hash: hold id -> this script's answer (paying twice answers the same)
-- KEYS[5] sale:{id}:log     stream: one entry per confirmation
-- ARGV[1] hold id  ARGV[2] buyer id, or "" when the payment provider confirms
-- ARGV[3] payment reference  ARGV[4] now (ms)  ARGV[5] unit price in fen actually charged
-- returns cjson {ok=1, hold, buyer, qty, price, community, ref, paid_rank, gift, entry,
--   remaining, held, sold, gift_left, session, ver} or {err="no_hold"|"not_yours"|"expired"}
--   (a repeat answers the first time's answer, its ver included)
local done = redis.call('HGET', KEYS[4], ARGV[1])
if done then return done end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return cjson.encode({err = 'no_hold'}) end
local h = cjson.decode(raw)
if ARGV[2] ~= '' and h.b ~= ARGV[2] then return cjson.encode({err = 'not_yours'}) end
local now = tonumber(ARGV[4])
-- An expired hold is left for the sweeper (expire.lua) to return to stock.
if h.e <= now then return cjson.encode({err = 'expired'}) end

local m = redis.call('HMGET', KEYS[1], 'id', 'gift_n', 'session', 'remaining')
local held = redis.call('HINCRBY', KEYS[1], 'held', -h.q)
local sold = redis.call('HINCRBY', KEYS[1], 'sold', h.q)
local rank = redis.call('HINCRBY', KEYS[1], 'paid', 1)
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local gift_n = tonumber(m[2])
local gift = 0
if rank <= gift_n then gift = 1 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local price = tonumber(ARGV[5])
local entry = redis.call('XADD', KEYS[5], '*', 'sale', m[1], 'hold', ARGV[1], 'buyer', h.b,
  'qty', h.q, 'price', price, 'community', h.c, 'ref', ARGV[3], 'rank', rank, 'gift', gift,
  'at', now)
local result = cjson.encode({ok = 1, hold = ARGV[1], buyer = h.b, qty = h.q, price = price,
  community = h.c, ref = ARGV[3], paid_rank = rank, gift = gift, entry = entry,
  remaining = tonumber(m[4]), held = held, sold = sold, gift_left = math.max(0, gift_n - rank),
  session = m[3], ver = ver})
redis.call('HSET', KEYS[4], ARGV[1], result)
return result

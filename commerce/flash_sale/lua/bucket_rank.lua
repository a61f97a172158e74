-- bucket_rank.lua: the sale-wide rank of a hold (or of a payment), given once: the same hold
-- always gets the same rank, and ranks are 1, 2, 3, ... with no gap, in the one slot of the
-- sale's coordinating key (a small step, only for a reservation that got its hold).
-- KEYS[1] bsale:{<sale>}:ranks  hash: "#<kind>" -> last rank, "<kind>:<hold id>" -> its rank
-- ARGV[1] kind ("h" a hold, "p" a payment)  ARGV[2] hold id
-- returns the rank
local field = ARGV[1] .. ':' .. ARGV[2]
local rank = redis.call('HGET', KEYS[1], field)
if rank then return tonumber(rank) end
rank = redis.call('HINCRBY', KEYS[1], '#' .. ARGV[1], 1)
redis.call('HSET', KEYS[1], field, rank)
return rank

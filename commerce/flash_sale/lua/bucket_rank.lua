-- bucket_rank.lua: sale-wide ranks of holds (or of payments), each given once: the same hold
-- always gets the same rank, and ranks are 1, 2, 3, ... with no gap, in the one slot of the
-- sale's coordinating key. Only reservations that got a hold take one; a process gathers the
-- holds its concurrent requests got into one call (this key is the one every success touches).
-- KEYS[1] bsale:{<sale>}:ranks  hash: "#<kind>" -> last rank, "<kind>:<hold id>" -> its rank
-- ARGV[1] kind ("h" a hold, "p" a payment)  ARGV[2..] hold ids, ranked in this order
-- returns the ranks, one per hold id
local ranks = {}
for i = 2, #ARGV do
  local field = ARGV[1] .. ':' .. ARGV[i]
  local rank = redis.call('HGET', KEYS[1], field)
  if rank then
    rank = tonumber(rank)
  else
    rank = redis.call('HINCRBY', KEYS[1], '#' .. ARGV[1], 1)
    redis.call('HSET', KEYS[1], field, rank)
  end
  ranks[#ranks + 1] = rank
end
return ranks

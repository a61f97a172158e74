-- group.lua: put (or, with "", remove) one community's group-buy summary where reserve.lua hands
-- it back, and bump the sale's version in the same step, so a progress value read with the old
-- summary (an older status) can never win over the new one in the room.
-- KEYS[1] sale:{id}:meta  KEYS[2] sale:{id}:groups  (see reserve.lua)
-- ARGV[1] community id  ARGV[2] cjson summary, or "" to remove it
-- returns the sale's version after the change (0 when Redis holds no such sale: the version
--   lives in the sale's hash, which must not be made here without its stock)
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'ver', 1)

-- backup_snapshot.lua: every key of this Redis database with its TTL and DUMP payload, read in
-- one atomic step, so the copy is of one instant: a sale's stock counts, its holds, its
-- confirmation log and the log's consumer group all agree with each other.
-- A standalone Redis only (a Redis Cluster node holds part of the keys; see docs/BACKUP.md).
-- No KEYS, no ARGV (the script reads the whole database on purpose).
-- returns a flat array: key, pttl (-1 = no expiry), dump payload, key, pttl, dump, ...
local out = {}
for _, key in ipairs(redis.call('KEYS', '*')) do
  local dump = redis.call('DUMP', key)
  if dump then
    out[#out + 1] = key
    out[#out + 1] = redis.call('PTTL', key)
    out[#out + 1] = dump
  end
end
return out

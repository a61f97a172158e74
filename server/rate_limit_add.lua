-- rate_limit_add.lua: add one process's new counts to the shared counters and answer the
-- totals of every process, in one round trip (a pipeline of INCRBY/EXPIRE cost the worker a
-- Python command object per key and per TTL).
-- KEYS[i] a counter `rl:<rule>:<per>:<subject>:<window index>`
-- ARGV[2i-1] what this process admitted under KEYS[i] since its last share
-- ARGV[2i]   the counter's lifetime (s), given when this call creates it
-- returns the totals, one per key, in order
local totals = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[2 * i - 1])
  local total = redis.call('INCRBY', key, n)
  if total == n then redis.call('EXPIRE', key, ARGV[2 * i]) end
  totals[i] = total
end
return totals

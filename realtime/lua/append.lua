-- append.lua: number room events, keep them in the bounded history, publish them to every process.
-- Atomic, so the publish order on the channel is the sequence order (receivers need no reordering).
-- KEYS[1] rt:{room}:seq  KEYS[2] rt:{room}:epoch  KEYS[3] rt:{room}:log (stream, ids "<seq>-0")
-- ARGV[1] pub/sub channel  ARGV[2] room id  ARGV[3] history length  ARGV[4] ttl seconds
-- ARGV[5] epoch to use if the room has none yet  ARGV[6..] events: JSON objects without "seq"
-- returns {epoch, first seq, last seq}
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  -- a new history (or Redis lost it): old sequence numbers mean nothing any more
  epoch = ARGV[5]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local keep = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local out = {}
local first = 0
local seq = 0
for i = 6, #ARGV do
  seq = redis.call('INCR', KEYS[1])
  if first == 0 then first = seq end
  local ev = '{"seq":' .. seq .. ',' .. string.sub(ARGV[i], 2)
  local floor = seq - keep + 1
  if floor < 0 then floor = 0 end
  -- trimming by MINID makes the oldest kept seq a function of the head alone, so "too old"
  -- is decidable even after moderators XDEL single comments
  redis.call('XADD', KEYS[3], 'MINID', floor, seq .. '-0', 'e', ev)
  out[#out + 1] = ev
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('PUBLISH', ARGV[1], 'linli:{"t":"ev","r":' .. ARGV[2] .. ',"ep":"' .. epoch .. '","e":[' ..
  table.concat(out, ',') .. ']}')
return {epoch, first, seq}

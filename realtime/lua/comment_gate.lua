-- comment_gate.lua: may this user send now? Ban, mute, slow mode and rate limit in one round trip,
-- so every process agrees. Banned words come back for the caller to mask.
-- KEYS[1] rt:{room}:ban:<user>  KEYS[2] rt:{room}:mute:<user>  KEYS[3] rt:{room}:slow:<user>
-- KEYS[4] rt:{room}:rate:<kind>:<user>  KEYS[5] rt:{room}:cfg (hash)  KEYS[6] rt:{room}:words (set)
-- ARGV[1] max messages per window  ARGV[2] window ms  ARGV[3] apply slow mode ("1"/"0")
-- returns {"ok", word...} or {reason, retry_ms (-1 = permanent), detail}
local ban = redis.call('GET', KEYS[1])
if ban then return {'banned', redis.call('PTTL', KEYS[1]), ban} end
local mute = redis.call('GET', KEYS[2])
if mute then return {'muted', redis.call('PTTL', KEYS[2]), mute} end
if ARGV[3] == '1' then
  local slow = tonumber(redis.call('HGET', KEYS[5], 'slow_mode_s') or '0')
  if slow > 0 then
    if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', slow * 1000) then
      return {'slow_mode', redis.call('PTTL', KEYS[3]), tostring(slow)}
    end
  end
end
local count = redis.call('INCR', KEYS[4])
if count == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[2]) end
if count > tonumber(ARGV[1]) then
  return {'rate_limited', redis.call('PTTL', KEYS[4]), ARGV[1]}
end
local result = {'ok'}
for _, word in ipairs(redis.call('SMEMBERS', KEYS[6])) do result[#result + 1] = word end
return result

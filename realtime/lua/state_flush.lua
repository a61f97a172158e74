-- state_flush.lua: write a process's coalesced counter changes into the room state hash and, at
-- most once per gate period across all processes, publish the whole snapshot.
-- KEYS[1] rt:{room}:state (hash)  KEYS[2] rt:{room}:viewers (hash host -> "count|expires_ms")
-- KEYS[3] rt:{room}:gate
-- ARGV[1] channel  ARGV[2] room id  ARGV[3] now_ms  ARGV[4] gate ms  ARGV[5] ttl seconds
-- ARGV[6] host id  ARGV[7] local viewer count or "" (unchanged)  ARGV[8] viewer entry ttl ms
-- ARGV[9] likes to add  ARGV[10] paid orders to add
-- ARGV[11..] quadruples: field, version, observed_ms, JSON value. A field keeps the value with
--            the highest (version, observed_ms): versions come from the sale scripts in Redis
--            and order a sale's counters whatever process saw them when; 0 for unversioned
--            fields, which then go by observation time. Stored as "<version>:<observed_ms>|<json>"
--            (a value written before versions, "<observed_ms>|<json>", reads as version 0).
-- returns the published version, or 0 when another process published within the gate period
local now = tonumber(ARGV[3])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7] .. '|' .. (now + tonumber(ARGV[8])))
  local total = 0
  local entries = redis.call('HGETALL', KEYS[2])
  for i = 1, #entries, 2 do
    local sep = string.find(entries[i + 1], '|', 1, true)
    local count = tonumber(string.sub(entries[i + 1], 1, sep - 1))
    local expires = tonumber(string.sub(entries[i + 1], sep + 1))
    if expires < now then
      redis.call('HDEL', KEYS[2], entries[i])
    else
      total = total + count
    end
  end
  redis.call('HSET', KEYS[1], 'viewers', total)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
if tonumber(ARGV[9]) > 0 then redis.call('HINCRBY', KEYS[1], 'likes', ARGV[9]) end
if tonumber(ARGV[10]) > 0 then redis.call('HINCRBY', KEYS[1], 'orders_paid', ARGV[10]) end
local function order_of(stored)
  local sep = string.find(stored, '|', 1, true)
  if not sep then return 0, 0 end
  local head = string.sub(stored, 1, sep - 1)
  local colon = string.find(head, ':', 1, true)
  if not colon then return 0, tonumber(head) or 0 end
  return tonumber(string.sub(head, 1, colon - 1)) or 0, tonumber(string.sub(head, colon + 1)) or 0
end
for i = 11, #ARGV, 4 do
  local field = ARGV[i]
  local version = tonumber(ARGV[i + 1])
  local observed = tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[1], field)
  local keep_old = false
  if old then
    local old_version, old_observed = order_of(old)
    keep_old = old_version > version or (old_version == version and old_observed > observed)
  end
  if not keep_old then
    redis.call('HSET', KEYS[1], field, ARGV[i + 1] .. ':' .. ARGV[i + 2] .. '|' .. ARGV[i + 3])
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
  return 0
end
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
local all = redis.call('HGETALL', KEYS[1])
local parts = {}
for i = 1, #all, 2 do
  parts[#parts + 1] = cjson.encode(all[i]) .. ':' .. cjson.encode(all[i + 1])
end
redis.call('PUBLISH', ARGV[1], 'linli:{"t":"st","r":' .. ARGV[2] .. ',"s":{' ..
  table.concat(parts, ',') .. '}}')
return version

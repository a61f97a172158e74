-- login_reserve.lua: take one login attempt slot for an account and an address before the
-- password is checked, or refuse. Attempts being checked ("in flight") count against the free
-- failures, so guesses sent in parallel cannot all pass a check made before any of them failed.
-- KEYS[1] login:fail:u:<user>  KEYS[2] login:lock:u:<user>  KEYS[3] login:busy:u:<user>
-- KEYS[4] login:fail:ip:<ip>   KEYS[5] login:lock:ip:<ip>   KEYS[6] login:busy:ip:<ip>
-- ARGV[1] free failures per account  ARGV[2] free failures per address
-- ARGV[3] limit the address ("1"/"0")  ARGV[4] in-flight key TTL s (a crashed worker's slots
-- come back after it)
-- returns {1, 0} when a slot is taken; {0, wait_ms} while locked or while the slots are in use
local limit_ip = ARGV[3] == '1'
local wait = redis.call('PTTL', KEYS[2])
if limit_ip then
  local ip_wait = redis.call('PTTL', KEYS[5])
  if ip_wait > wait then wait = ip_wait end
end
if wait > 0 then return {0, wait} end

-- Slots left: the free failures not yet used, and at least one (after a lock ran out, one
-- attempt at a time decides whether the next, longer, lock follows).
local function full(fail_key, busy_key, free)
  local failed = tonumber(redis.call('GET', fail_key) or '0')
  local busy = tonumber(redis.call('GET', busy_key) or '0')
  return busy >= math.max(1, free - failed)
end

if full(KEYS[1], KEYS[3], tonumber(ARGV[1])) then return {0, 1000} end
if limit_ip and full(KEYS[4], KEYS[6], tonumber(ARGV[2])) then return {0, 1000} end
local ttl = tonumber(ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ttl)
if limit_ip then
  redis.call('INCR', KEYS[6])
  redis.call('EXPIRE', KEYS[6], ttl)
end
return {1, 0}

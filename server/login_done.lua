-- login_done.lua: the attempt whose slot login_reserve.lua took has an outcome. Its slots are
-- given back; a failure is counted (and locks, 2 s doubling, from the free-th one on); a
-- success clears the account's count and lock.
-- KEYS[1] login:fail:u:<user>  KEYS[2] login:lock:u:<user>  KEYS[3] login:busy:u:<user>
-- KEYS[4] login:fail:ip:<ip>   KEYS[5] login:lock:ip:<ip>   KEYS[6] login:busy:ip:<ip>
-- ARGV[1] "fail" | "ok" | "abort" (no verdict: the request died)  ARGV[2] free per account
-- ARGV[3] free per address  ARGV[4] limit the address ("1"/"0")  ARGV[5] counting window s
-- ARGV[6] longest lock s
-- returns 1
local limit_ip = ARGV[4] == '1'

local function give_back(busy_key)
  if tonumber(redis.call('GET', busy_key) or '0') > 0 then redis.call('DECR', busy_key) end
end

local function fail(fail_key, lock_key, free)
  local n = redis.call('INCR', fail_key)
  redis.call('EXPIRE', fail_key, tonumber(ARGV[5]))
  if n >= free then
    local lock = math.min(tonumber(ARGV[6]), 2 ^ (n - free + 1))
    redis.call('SET', lock_key, '1', 'EX', math.floor(lock))
  end
end

give_back(KEYS[3])
if limit_ip then give_back(KEYS[6]) end
if ARGV[1] == 'fail' then
  fail(KEYS[1], KEYS[2], tonumber(ARGV[2]))
  if limit_ip then fail(KEYS[4], KEYS[5], tonumber(ARGV[3])) end
elseif ARGV[1] == 'ok' then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1

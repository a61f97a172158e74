-- bucket_close.lua: one bucket stops selling (live holds may still be paid or go back).
-- KEYS[1] bsale:{T}:meta
-- returns 1 when it was open, 0 otherwise (already closed, or no such bucket)
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'closed')
return 1

-- bucket_open.lua: put one bucket's share of a bucketed sale's stock into Redis. Idempotent: a
-- bucket already present keeps its counts (see open.lua).
-- KEYS[1] bsale:{<sale>.<bucket>.<n>}:meta  hash: sale bucket buckets status starts ends ttl
--         initial remaining held sold seq ver  (the tag puts each bucket in its own slot range)
-- ARGV[1] sale id  ARGV[2] bucket  ARGV[3] buckets  ARGV[4] this bucket's stock
-- ARGV[5] starts (ms)  ARGV[6] ends (ms, 0 = none)  ARGV[7] hold ttl (s)
-- returns 1 when created, 0 when it already existed
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'sale', ARGV[1], 'bucket', ARGV[2], 'buckets', ARGV[3],
  'status', 'open', 'starts', ARGV[5], 'ends', ARGV[6], 'ttl', ARGV[7], 'initial', ARGV[4],
  'remaining', ARGV[4], 'held', 0, 'sold', 0, 'seq', 0, 'ver', 0)
return 1

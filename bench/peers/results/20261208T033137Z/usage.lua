local c = 1000 + 3 * tonumber(ARGV[1])
local available = tonumber(redis.call('HGET', KEYS[1], 'available'))
if available == nil or available < c then return 0 end
redis.call('HINCRBY', KEYS[1], 'available', -c)
redis.call('HINCRBY', KEYS[1], 'consumed', c)
local ws = tonumber(string.sub(KEYS[1], 4))
redis.call('XADD', KEYS[2], '*', 'ws', ws, 'member', ws * 10 + tonumber(ARGV[2]) % 10, 'credits', c)
return 1

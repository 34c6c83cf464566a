-- Admits one task of an API key under its limits, or refuses it (KeyLimiter.admit).
-- KEYS[1] the key's rate state, KEYS[2] its in-flight set. ARGV: rate (requests per period;
-- 0: no rate limit), period ms, max in flight (0: no limit), task id, task deadline ms.
-- Both limits are checked before either is charged: a task one of them refuses costs the
-- other nothing. Time is Redis's own (TIME), so the gateways' clocks need not agree.
-- Rate: GCRA, burst = the rate. KEYS[1] holds the theoretical arrival time (TAT, us): each
-- admitted task moves it one interval (period / rate) on; a task is admitted while the TAT
-- it would set is at most one period ahead of now.
-- In flight: a sorted set of task ids scored by their deadline (ms); entries past their
-- deadline drop out, so a task whose end was never reported holds its slot no longer.
-- Returns nil (admitted) or {limit, ms}: 'rate' and the wait until the rate admits one more,
-- or 'in_flight' and the time until the entry with the earliest deadline drops out.
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now_us / 1000)
local rate, period_us = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000
local max_in_flight = tonumber(ARGV[3])

local tat
if rate > 0 then
  tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now_us) + period_us / rate
  local over_us = tat - now_us - period_us
  if over_us > 0 then
    return {'rate', math.ceil(over_us / 1000)}
  end
end
if max_in_flight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now_ms)
  if redis.call('ZCARD', KEYS[2]) >= max_in_flight then
    local earliest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {'in_flight', math.max(tonumber(earliest[2]) - now_ms, 0)}
  end
end

if rate > 0 then
  -- Once the TAT is past, no state is the same state: the key expires then.
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000))
end
if max_in_flight > 0 then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
  local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], latest[2])
end
return nil

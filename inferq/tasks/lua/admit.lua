-- Admits tasks of API keys under their limits, or refuses them (KeyLimiter.admit), several in
-- one call: those a gateway was asked to admit in one turn of its event loop, in order, each
-- as if alone. Task i (from 1) has KEYS[2i-1] its key's rate state and KEYS[2i] its in-flight
-- set, and ARGV[5i-4 .. 5i]: rate (requests per period; 0: no rate limit), period ms, max in
-- flight (0: no limit), task id, task deadline ms.
-- Both limits are checked before either is charged: a task one of them refuses costs the
-- other nothing. Time is Redis's own (TIME), so the gateways' clocks need not agree.
-- Rate: GCRA, burst = the rate. The rate state holds the theoretical arrival time (TAT, us):
-- each admitted task moves it one interval (period / rate) on; a task is admitted while the
-- TAT it would set is at most one period ahead of now.
-- In flight: a sorted set of task ids scored by their deadline (ms); entries past their
-- deadline drop out, so a task whose end was never reported holds its slot no longer.
-- Returns one entry per task: false (nil to the caller: admitted) or {limit, ms}: 'rate' and
-- the wait until the rate admits one more, or 'in_flight' and the time until the entry with
-- the earliest deadline drops out.
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now_us / 1000)

local function admit(rate_key, in_flight_key, rate, period_us, max_in_flight, task, deadline)
  local tat
  if rate > 0 then
    tat = math.max(tonumber(redis.call('GET', rate_key) or 0), now_us) + period_us / rate
    local over_us = tat - now_us - period_us
    if over_us > 0 then
      return {'rate', math.ceil(over_us / 1000)}
    end
  end
  if max_in_flight > 0 then
    redis.call('ZREMRANGEBYSCORE', in_flight_key, '-inf', '(' .. now_ms)
    if redis.call('ZCARD', in_flight_key) >= max_in_flight then
      local earliest = redis.call('ZRANGE', in_flight_key, 0, 0, 'WITHSCORES')
      return {'in_flight', math.max(tonumber(earliest[2]) - now_ms, 0)}
    end
  end
  if rate > 0 then
    -- Once the TAT is past, no state is the same state: the key expires then.
    redis.call('SET', rate_key, string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000))
  end
  if max_in_flight > 0 then
    redis.call('ZADD', in_flight_key, deadline, task)
    local latest = redis.call('ZRANGE', in_flight_key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', in_flight_key, latest[2])
  end
  return false
end

local results = {}
for i = 1, #KEYS / 2 do
  local a = 5 * (i - 1)
  results[i] = admit(
    KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]) * 1000,
    tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5]
  )
end
return results

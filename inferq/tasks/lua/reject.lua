-- Marks a task whose publish failed as never accepted (TaskStore.reject).
-- KEYS[1] task hash. ARGV: ttl s. Returns 1 if the task was still queued and is now rejected;
-- 0 if a worker already has it (so the broker had it: the task was accepted after all).
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'queued' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'rejected')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1

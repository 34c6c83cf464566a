-- Moves a task to running (TaskStore.mark_running).
-- KEYS[1] task hash. ARGV: worker id, now ms, ttl s, "1" to leave a running task alone, then
-- the task's model, created ms, deadline ms and owner (the gateway writes the same; a worker
-- can get there first, as the gateway creates the record after the publish).
-- Returns the status before the call; the task is running now unless that was final (or it
-- was running and left alone). A task with no record (Redis lost its data) runs and gets one.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' or status == 'expired' or status == 'rejected' or (status == 'running' and ARGV[4] == '1') then
  return status
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker_id', ARGV[1], 'started_at_ms', ARGV[2],
  'model', ARGV[5], 'created_at_ms', ARGV[6], 'deadline_ms', ARGV[7], 'owner', ARGV[8])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return status or ''

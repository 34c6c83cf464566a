-- Records tasks as queued (TaskStore.create).
-- KEYS: one task hash per task. ARGV[1] ttl s, then per task: model, created ms, deadline ms,
-- owner (the API key id that sent it; empty: anonymous).
-- The status and the attempts are set only where no worker set them already (the gateway
-- creates the record once the broker confirmed the message, so a worker may get there first).
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 4
  redis.call('HSETNX', KEYS[i], 'status', 'queued')
  redis.call('HSETNX', KEYS[i], 'attempts', 0)
  redis.call('HSET', KEYS[i], 'model', ARGV[at], 'created_at_ms', ARGV[at + 1],
    'deadline_ms', ARGV[at + 2], 'owner', ARGV[at + 3])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return #KEYS

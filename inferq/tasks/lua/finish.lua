-- Writes final states and announces them (TaskStore.finish).
-- KEYS[1] done channel, then one task hash per task, then the in-flight set of each task
-- that holds a slot of its API key's in-flight limit (see admit.lua). ARGV[1] ttl s, then per
-- task: its id and its fields, msgpack [field, value, ...] (one argument, not one per field
-- and value: Python's Redis client packs each argument, ~1 us apiece, a tenth of a worker's
-- time), then per in-flight set: the id of the task to remove from it. (So #ARGV - #KEYS is
-- the number of tasks, and a task without a slot costs no argument.)
-- Writes each task's final state unless it is final already, and announces the tasks it
-- wrote in one message: msgpack [id, [field, value, ...], id, ...], each task's whole hash.
-- A final task holds no slot, whoever wrote its state: each slot is freed either way.
-- Returns a 1 (written) or 0 (already final) per task.
local tasks = #ARGV - #KEYS
local written, notice = {}, {}
for i = 2, tasks + 1 do
  local status = redis.call('HGET', KEYS[i], 'status')
  if status == 'succeeded' or status == 'failed' or status == 'expired' or status == 'rejected' then
    written[i - 1] = 0
  else
    redis.call('HSET', KEYS[i], unpack(cmsgpack.unpack(ARGV[2 * i - 1])))
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    notice[#notice + 1] = ARGV[2 * i - 2]
    notice[#notice + 1] = redis.call('HGETALL', KEYS[i])
    written[i - 1] = 1
  end
end
for i = tasks + 2, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i + tasks])
end
if #notice > 0 then
  redis.call('PUBLISH', KEYS[1], cmsgpack.pack(notice))
end
return written

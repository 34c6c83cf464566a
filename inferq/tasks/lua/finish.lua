-- Writes final states and announces them (TaskStore.finish).
-- KEYS[1] done channel, then one task hash per task. ARGV[1] ttl s, then per task: its id
-- and its fields, msgpack [field, value, ...] (one argument, not one per field and value:
-- Python's Redis client packs each argument, ~1 us apiece, a tenth of a worker's time).
-- Writes each task's final state unless it is final already, and announces the tasks it
-- wrote in one message: msgpack [id, [field, value, ...], id, ...], each task's whole hash.
-- Returns a 1 (written) or 0 (already final) per task.
local written, notice = {}, {}
for i = 2, #KEYS do
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
if #notice > 0 then
  redis.call('PUBLISH', KEYS[1], cmsgpack.pack(notice))
end
return written

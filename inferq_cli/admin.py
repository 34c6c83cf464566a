"""Removes everything one namespace created: its queues, exchange and Redis keys. For test
runs and for tearing down a deployment; it touches no name outside the namespace. An
operator's action on a whole deployment, used by no role: so it sits here, above them."""

from __future__ import annotations

from inferq.amqp import connect_once
from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.settings import CommonSettings


async def drop_namespace(settings: CommonSettings, models: list[str] = ()) -> None:  # type: ignore[assignment]
    names = Names(settings.namespace)
    redis = connect_redis(settings.redis_url, sentinel_password=settings.redis_sentinel_password)
    try:
        members = await redis.smembers(names.models)  # type: ignore[misc]
        known = {m.decode() if isinstance(m, bytes) else m for m in members}
        queues = [names.model_queue(m) for m in sorted(known | set(models))]
        connection = await connect_once(settings.amqp_urls)
        async with connection:
            for queue in [*queues, names.dead_letter_queue]:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.close()
            channel = await connection.channel()
            await channel.exchange_delete(names.dead_letter_exchange)
        keys = [key async for key in redis.scan_iter(match=names.key_pattern, count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()

"""Lua scripts queued on a Redis pipeline, on a single Redis and on Redis Cluster alike.

redis-py's pipelines send a registered script as EVALSHA after loading it once; its cluster
pipelines refuse EVALSHA (a node may not have the script), so there the script goes as EVAL
with its text, which the node compiles once and then finds by its SHA.
"""

from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript


async def queue_script(pipe, script: AsyncScript, keys: list, args: list) -> None:
    if isinstance(pipe, ClusterPipeline):
        pipe.eval(script.script, len(keys), *keys, *args)
    else:
        await script(keys=keys, args=args, client=pipe)

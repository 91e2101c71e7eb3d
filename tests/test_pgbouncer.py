"""The database clients through a real PgBouncer (Debian's) in transaction pooling mode, as
Kubernetes runs them: the services' SQLAlchemy engine (fleet_common.db) and location's own
asyncpg pools, with DATABASE_PGBOUNCER's arguments, and the engine without them failing.
"""

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from fleet_common.db import PGBOUNCER_ASYNCPG_ARGS, create_engine
from fleet_devstack.servers import PgBouncer, free_port


@pytest.fixture(scope="module")
def pgbouncer(stack):
    # Beside the stack's PostgreSQL: a directory the postgres user can reach.
    port = free_port()
    bouncer = PgBouncer(stack.state_dir / f"pgbouncer-{port}", port, stack.postgres)
    bouncer.start()
    yield bouncer
    bouncer.stop()


async def many_queries(engine, count: int = 30) -> int:
    async def one(i: int) -> int:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT CAST(:i AS int)"), {"i": i})
            return result.scalar()

    return sum(await asyncio.gather(*(one(i) for i in range(count))))


async def test_the_engine_setting_is_what_makes_transaction_pooling_work(pgbouncer):
    # Concurrent clients on few server connections: without the setting, a statement asyncpg
    # prepared and cached on one server connection is executed on another.
    url = pgbouncer.url("postgres")
    pooled = create_engine(url, pgbouncer=True)
    try:
        assert await many_queries(pooled) == sum(range(30))
    finally:
        await pooled.dispose()
    cached = create_engine(url)
    try:
        with pytest.raises(DBAPIError, match="prepared statement"):
            await many_queries(cached)
    finally:
        await cached.dispose()


async def test_location_pools_work_through_pgbouncer_with_the_setting(pgbouncer):
    dsn = pgbouncer.url("postgres").replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=8, **PGBOUNCER_ASYNCPG_ARGS)
    try:
        values = await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(40)))
        assert values == list(range(40))
    finally:
        await pool.close()

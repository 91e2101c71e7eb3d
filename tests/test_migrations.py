"""Every service's migrations build its schema from empty and tear it down again (issue 2)."""

import re

import pytest

from fleet_devstack.stack import DATABASES, migrate

USER_TABLES = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'"
)


@pytest.mark.parametrize("service", sorted(DATABASES))
def test_upgrade_to_head_and_downgrade_to_base(stack, make_database, service):
    url = make_database(f"mig_{service}")
    database = url.rsplit("/", 1)[1]
    env = {f"{service.upper()}_DATABASE_URL": url}

    heads = re.findall(r"^(\w+) \(head\)", migrate(service, env, "heads"), re.M)
    assert len(heads) == 1, "one linear history per service"

    migrate(service, env, "upgrade", "head")
    assert stack.postgres.psql("SELECT version_num FROM alembic_version", database) == (
        f"{heads[0]}\n"
    )
    if service == "location":
        assert "postgis" in stack.postgres.psql("SELECT extname FROM pg_extension", database)

    migrate(service, env, "downgrade", "base")
    assert stack.postgres.psql(USER_TABLES, database) == "0\n"
    assert stack.postgres.psql("SELECT count(*) FROM alembic_version", database) == "0\n"

    # And back up again: downgrade left nothing behind that blocks a fresh upgrade.
    migrate(service, env, "upgrade", "head")

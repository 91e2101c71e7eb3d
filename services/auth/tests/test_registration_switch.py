"""AUTH_ALLOW_REGISTRATION=false closes sign-up (in-process app on its own database)."""

import httpx

from fleet_auth.config import Settings
from fleet_auth.main import create_app

from .conftest import PASSWORD, is_problem, new_email


async def test_registration_can_be_switched_off(migrated_database, stack, tmp_path):
    settings = Settings(
        database_url=migrated_database("auth"),
        redis_url=stack.redis.url,
        keys_dir=tmp_path,
        allow_registration=False,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        response = await client.post(
            "/api/v1/auth/register",
            json={
                "org_name": "Closed",
                "email": new_email(),
                "password": PASSWORD,
                "full_name": "No One",
            },
        )
        assert is_problem(response, 403)
        assert "registration is closed" in response.json()["detail"]

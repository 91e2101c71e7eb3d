import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

PASSWORD = "Fleet-Test-Passw0rd!"


@pytest.fixture
async def client(auth_service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_service.url, timeout=30.0) as client:
        yield client


def new_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def is_problem(response: httpx.Response, status: int) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and body["status"] == status
        and {"type", "title", "detail"} <= body.keys()
    )

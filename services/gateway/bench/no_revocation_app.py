"""The gateway without its revocation check, for `bench_gateway.py` only: the same app, its
token verifier given no revocation list once it has started, so that the two gateways of
one run differ by that check alone. Never a way to run the gateway."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fleet_gateway.main import create_app as create_gateway


def create_app() -> FastAPI:
    app = create_gateway()
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with started(app):
            app.state.token_verifier.revocations = None
            yield

    app.router.lifespan_context = lifespan
    return app

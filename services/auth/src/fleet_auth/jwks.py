"""`/.well-known/jwks.json`: the public keys every service verifies access tokens with."""

from typing import Any

from fastapi import APIRouter, Response

from fleet_auth.dependencies import KeyRingDep

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
async def jwks(keys: KeyRingDep, response: Response) -> dict[str, list[dict[str, Any]]]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return keys.jwks()

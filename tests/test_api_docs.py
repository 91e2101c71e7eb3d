"""The combined OpenAPI document of the whole platform, as the gateway serves it."""

import httpx

from fleet_gateway.routing import ROUTING_TABLE


def test_the_gateway_documents_every_service_under_its_public_paths(platform):
    response = httpx.get(f"{platform.gateway}/api/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert "x-unavailable-services" not in document["info"]
    paths = document["paths"]
    for rule in ROUTING_TABLE:
        if rule.prefix.startswith("/api/v1/"):
            stem = rule.prefix.split("/{")[0]
            assert any(p.startswith(stem) for p in paths), f"nothing documented under {stem}"
    assert not any(p.startswith(("/internal", "/health", "/metrics")) for p in paths)
    assert "get" in paths["/api/v1/vehicles/{vehicle_id}/history"]
    schemas = document["components"]["schemas"]
    for piece in response.text.split('"#/components/schemas/')[1:]:
        assert piece.split('"', 1)[0] in schemas

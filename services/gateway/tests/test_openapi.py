"""The combined OpenAPI document: routed paths only, each from its own service, no schema lost."""

import json
from pathlib import Path

from fleet_gateway.openapi import combined_openapi, service_documents
from fleet_gateway.routing import ROUTING_TABLE

FRONTEND_COPY = Path(__file__).parents[3] / "frontend" / "src" / "api" / "openapi.json"


def _document(paths: dict, schemas: dict) -> dict:
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas}}


def _get(ref: str) -> dict:
    body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}
    return {"get": {"responses": {"200": body}}}


def test_only_paths_routed_to_their_own_service_are_kept():
    documents = {
        "vehicle": _document(
            {
                "/api/v1/vehicles": _get("Thing"),
                "/internal/devices": _get("Thing"),
                "/health/liveness": _get("Thing"),
                # location's route, answered by vehicle too: the gateway never sends it there
                "/api/v1/vehicles/{vehicle_id}/history": _get("Thing"),
            },
            {"Thing": {"type": "object"}},
        ),
        "location": _document(
            {"/api/v1/vehicles/{vehicle_id}/history": _get("Thing")}, {"Thing": {"type": "object"}}
        ),
    }

    doc = combined_openapi(documents, version="1")

    assert sorted(doc["paths"]) == ["/api/v1/vehicles", "/api/v1/vehicles/{vehicle_id}/history"]
    assert doc["paths"]["/api/v1/vehicles/{vehicle_id}/history"]["get"]["tags"] == ["location"]
    assert doc["paths"]["/api/v1/vehicles"]["get"]["tags"] == ["vehicle"]


def test_a_schema_name_two_services_define_differently_is_renamed_in_the_second():
    documents = {
        "auth": _document({"/api/v1/users": _get("Page")}, {"Page": {"title": "users"}}),
        "vehicle": _document({"/api/v1/drivers": _get("Page")}, {"Page": {"title": "drivers"}}),
    }

    doc = combined_openapi(documents, version="1")

    schemas = doc["components"]["schemas"]
    assert schemas["Page"] == {"title": "users"}
    assert schemas["VehiclePage"] == {"title": "drivers"}
    ref = doc["paths"]["/api/v1/drivers"]["get"]["responses"]["200"]["content"]
    assert ref["application/json"]["schema"]["$ref"] == "#/components/schemas/VehiclePage"


def test_the_real_services_cover_every_public_api_route_and_every_ref_resolves():
    doc = combined_openapi(service_documents(), version="1")

    for rule in ROUTING_TABLE:
        if rule.prefix.startswith("/api/v1/"):
            assert any(p.startswith(rule.prefix.split("/{")[0]) for p in doc["paths"]), rule
    assert not any(p.startswith(("/internal", "/health")) for p in doc["paths"])
    text = json.dumps(doc)
    schemas = doc["components"]["schemas"]
    for piece in text.split('"#/components/schemas/')[1:]:
        assert piece.split('"', 1)[0] in schemas


def test_the_dashboards_checked_in_copy_is_current():
    """`cd frontend && npm run gen:api` regenerates it (and the TypeScript types from it)."""
    current = combined_openapi(
        service_documents(), version=json.loads(FRONTEND_COPY.read_text())["info"]["version"]
    )
    assert json.loads(FRONTEND_COPY.read_text()) == current, "run: cd frontend && npm run gen:api"

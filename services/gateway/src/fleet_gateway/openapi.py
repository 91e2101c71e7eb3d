"""The combined OpenAPI document of the public API: every service's document, cut to the paths
the gateway routes to that service, merged into one.

`combined_openapi` is a pure function over the services' documents, so the gateway can serve
it and the dashboard's client generator can read the same thing. A component schema that two
services define differently under one name is renamed `<Service><Name>` in the second
service's paths, so neither side's types are lost.

`python -m fleet_gateway.openapi` prints the document built from the services' apps in this
process (no servers needed); the dashboard's `npm run gen:api` uses it.
"""

import contextlib
import copy
import json
import sys
from collections.abc import Mapping
from typing import Any

from fleet_gateway.routing import ROUTING_TABLE, RouteRule, match_route

API_TITLE = "Fleet Tracker API"
SCHEMA_REF_PREFIX = "#/components/schemas/"


def combined_openapi(
    documents: Mapping[str, dict[str, Any]],
    *,
    version: str,
    table: tuple[RouteRule, ...] = ROUTING_TABLE,
) -> dict[str, Any]:
    """Merge `documents` (upstream name → that service's OpenAPI document) into one.

    Only the paths the routing table sends to the document's own upstream are kept: internal
    and health routes stay out, and a path two services both answer appears once, from the
    service that really serves it.
    """
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    security_schemes: dict[str, Any] = {}
    for upstream in sorted(documents):
        document = documents[upstream]
        components = document.get("components", {})
        renames: dict[str, str] = {}
        for name, schema in components.get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                renames[name] = upstream.capitalize() + name
        routed = {
            path: item
            for path, item in document.get("paths", {}).items()
            if (rule := match_route(path, table)) is not None and rule.upstream == upstream
        }
        if not routed:
            continue
        for name, schema in components.get("schemas", {}).items():
            schemas.setdefault(renames.get(name, name), _renamed_refs(schema, renames))
        security_schemes.update(components.get("securitySchemes", {}))
        for path, item in routed.items():
            paths[path] = _tagged(_renamed_refs(item, renames), upstream)
    components_out: dict[str, Any] = {"schemas": dict(sorted(schemas.items()))}
    if security_schemes:
        components_out["securitySchemes"] = security_schemes
    return {
        "openapi": "3.1.0",
        "info": {"title": API_TITLE, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": components_out,
    }


def _renamed_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if not renames:
        return copy.deepcopy(node)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(SCHEMA_REF_PREFIX):
                name = value.removeprefix(SCHEMA_REF_PREFIX)
                out[key] = SCHEMA_REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _renamed_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_renamed_refs(value, renames) for value in node]
    return node


def _tagged(path_item: dict[str, Any], upstream: str) -> dict[str, Any]:
    """Operations without tags get their service's name, so docs pages group them."""
    for operation in path_item.values():
        if isinstance(operation, dict) and "responses" in operation:
            operation.setdefault("tags", [upstream])
    return path_item


def service_documents() -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, from its app built with default settings."""
    from fleet_auth.main import create_app as auth_app
    from fleet_location.main import create_app as location_app
    from fleet_notification.main import create_app as notification_app
    from fleet_vehicle.main import create_app as vehicle_app

    apps = {
        "auth": auth_app,
        "vehicle": vehicle_app,
        "location": location_app,
        "notification": notification_app,
    }
    return {name: factory().openapi() for name, factory in apps.items()}


def main() -> None:
    from importlib.metadata import version

    # The apps set up logging to the stdout of the moment; their start-up lines must not end
    # up inside the document.
    with contextlib.redirect_stdout(sys.stderr):
        documents = service_documents()
    document = combined_openapi(documents, version=version("fleet-gateway"))
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

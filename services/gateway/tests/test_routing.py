"""The routing table is data; these are the contract's paths and where they go."""

import pytest

from fleet_gateway.routing import match_route


@pytest.mark.parametrize(
    ("path", "upstream", "public"),
    [
        ("/api/v1/auth/register", "auth", True),
        ("/api/v1/auth/login", "auth", True),
        ("/api/v1/auth/refresh", "auth", True),
        ("/api/v1/auth/firebase", "auth", True),
        ("/api/v1/auth/logout", "auth", False),
        ("/api/v1/auth/me", "auth", False),
        ("/api/v1/users", "auth", False),
        ("/api/v1/users/1234", "auth", False),
        ("/api/v1/users/directory", "auth", False),
        ("/.well-known/jwks.json", "auth", True),
        ("/api/v1/vehicles", "vehicle", False),
        ("/api/v1/vehicles/42", "vehicle", False),
        ("/api/v1/vehicles/42/history", "location", False),
        ("/api/v1/vehicles/42/trips", "location", False),
        ("/api/v1/vehicles/42/stops", "location", False),
        ("/api/v1/vehicles/42/history/extra", "location", False),
        ("/api/v1/drivers/7", "vehicle", False),
        ("/api/v1/devices/7/credentials", "vehicle", False),
        ("/api/v1/positions/latest", "location", False),
        ("/api/v1/positions/nearby", "location", False),
        ("/api/v1/geofences/3", "location", False),
        ("/api/v1/reports/summary", "location", False),
        ("/api/v1/ingest/rejections", "location", False),
        ("/api/v1/alerts/9/ack", "notification", False),
        ("/api/v1/alert-rules", "notification", False),
        ("/api/v1/push-tokens", "notification", False),
        ("/ingest/osmand", "location", True),
    ],
)
def test_contract_paths_route_to_their_service(path, upstream, public):
    rule = match_route(path)
    assert rule is not None
    assert (rule.upstream, rule.public) == (upstream, public)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1",
        "/api/v1/vehiclesx",
        "/api/v1/alertsx",
        "/internal/devices",
        "/api/v2/vehicles",
    ],
)
def test_unknown_and_internal_paths_have_no_route(path):
    assert match_route(path) is None


def test_history_of_a_vehicle_is_not_the_vehicle():
    assert match_route("/api/v1/vehicles/history").upstream == "vehicle"

"""The routing table: which upstream serves which public path. Data, not handlers.

Paths are matched segment by segment against each rule's prefix in order; the first match
wins, so a more specific rule comes before the general one it refines. `{id}` matches any
single segment. The gateway forwards paths unchanged.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RouteRule:
    prefix: str
    upstream: str
    group: str = "api"  # rate-limit group
    public: bool = False  # forwarded without a bearer token
    segments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(s for s in self.prefix.split("/") if s))

    @property
    def path(self) -> str:
        """The label of requests routed by this rule (metrics, access log)."""
        return self.prefix

    def matches(self, path_segments: list[str]) -> bool:
        if len(path_segments) < len(self.segments):
            return False
        return all(
            want == "{id}" or want == got
            for want, got in zip(self.segments, path_segments, strict=False)
        )


ROUTING_TABLE: tuple[RouteRule, ...] = (
    RouteRule("/.well-known/jwks.json", "auth", public=True),
    RouteRule("/api/v1/auth/register", "auth", group="auth", public=True),
    RouteRule("/api/v1/auth/login", "auth", group="auth", public=True),
    RouteRule("/api/v1/auth/refresh", "auth", group="auth", public=True),
    RouteRule("/api/v1/auth/firebase", "auth", group="auth", public=True),
    RouteRule("/api/v1/auth", "auth"),
    RouteRule("/api/v1/users", "auth"),
    RouteRule("/api/v1/vehicles/{id}/history", "location"),
    RouteRule("/api/v1/vehicles/{id}/trips", "location"),
    RouteRule("/api/v1/vehicles/{id}/stops", "location"),
    RouteRule("/api/v1/vehicles", "vehicle"),
    RouteRule("/api/v1/drivers", "vehicle"),
    RouteRule("/api/v1/devices", "vehicle"),
    RouteRule("/api/v1/positions", "location"),
    RouteRule("/api/v1/geofences", "location"),
    RouteRule("/api/v1/reports", "location"),
    RouteRule("/api/v1/ingest/rejections", "location"),
    RouteRule("/api/v1/alerts", "notification"),
    RouteRule("/api/v1/alert-rules", "notification"),
    RouteRule("/api/v1/push-tokens", "notification"),
    # OsmAnd devices cannot send a bearer token; the location service checks the device key.
    RouteRule("/ingest/osmand", "location", group="ingest", public=True),
)


def match_route(path: str, table: tuple[RouteRule, ...] = ROUTING_TABLE) -> RouteRule | None:
    segments = [s for s in path.split("/") if s]
    for rule in table:
        if rule.matches(segments):
            return rule
    return None

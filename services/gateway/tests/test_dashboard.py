"""The built dashboard at `/`, through a real gateway process whose build folder we write."""

import shutil

import httpx
import pytest

from .conftest import gateway_env, is_problem

INDEX_HTML = (
    "<!doctype html><html><head>"
    '<script type="module" src="/assets/index-4f2a9c1b.js"></script>'
    '<link rel="stylesheet" href="/assets/index-77aa01de.css"></head>'
    '<body><div id="root"></div></body></html>'
)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dashboard") / "dist"


@pytest.fixture(scope="module")
def dashboard_gateway(stack, auth_service, upstreams, run_service, build_dir):
    env = gateway_env(stack, auth_service, upstreams, GATEWAY_DASHBOARD_DIR=str(build_dir))
    return run_service("gateway", env)


@pytest.fixture
async def web(dashboard_gateway):
    async with httpx.AsyncClient(base_url=dashboard_gateway.url, timeout=30.0) as client:
        yield client


def write_build(build_dir) -> None:
    (build_dir / "assets").mkdir(parents=True, exist_ok=True)
    (build_dir / "index.html").write_text(INDEX_HTML)
    (build_dir / "assets" / "index-4f2a9c1b.js").write_text("console.log('fleet');\n")
    (build_dir / "assets" / "index-77aa01de.css").write_text("body{margin:0}\n")
    (build_dir / "assets" / "land-0c1d2e3f.json").write_text('{"type":"FeatureCollection"}')
    (build_dir / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (build_dir / "config.json").write_text('{"mapStyleUrl": null}')


@pytest.fixture
def built(build_dir):
    write_build(build_dir)
    yield build_dir
    shutil.rmtree(build_dir)


async def test_without_a_build_the_page_says_how_to_build_it(web, build_dir):
    assert not build_dir.exists()
    as_json = await web.get("/")
    assert is_problem(as_json, 503)
    assert "npm run build" in as_json.json()["detail"]
    as_page = await web.get("/vehicles", headers={"Accept": "text/html,*/*;q=0.8"})
    assert as_page.status_code == 503
    assert as_page.headers["content-type"].startswith("text/html")
    assert "npm run build" in as_page.text
    assert as_page.headers["cache-control"] == "no-store"


async def test_index_is_revalidated_and_hashed_assets_are_immutable(web, built):
    index = await web.get("/")
    assert index.status_code == 200
    assert index.text == INDEX_HTML
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert index.headers["cache-control"] == "no-cache"
    # A reload revalidates with the ETag and gets a 304 until the next build.
    again = await web.get("/", headers={"If-None-Match": index.headers["etag"]})
    assert again.status_code == 304

    script = await web.get("/assets/index-4f2a9c1b.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    style = await web.get("/assets/index-77aa01de.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    land = await web.get("/assets/land-0c1d2e3f.json")
    assert land.headers["content-type"] == "application/json"

    for name, media_type in [("favicon.svg", "image/svg+xml"), ("config.json", "application/json")]:
        top_level = await web.get(f"/{name}")
        assert top_level.status_code == 200
        assert top_level.headers["content-type"] == media_type
        assert top_level.headers["cache-control"] == "no-cache"  # same name in every build

    head = await web.head("/assets/index-4f2a9c1b.js")
    assert head.status_code == 200
    assert head.content == b""


async def test_app_routes_fall_back_to_the_page(web, built):
    for path in ["/vehicles", "/vehicles/9b1c/history", "/alerts?status=open", "/docs"]:
        response = await web.get(path)
        assert response.status_code == 200, path
        assert response.text == INDEX_HTML, path
        assert response.headers["cache-control"] == "no-cache"


async def test_missing_files_are_404s_not_the_page(web, built):
    for path in ["/assets/index-00000000.js", "/assets/gone", "/logo.png", "/assets"]:
        response = await web.get(path)
        assert response.status_code == 404, path
        assert not response.text.startswith("<!doctype html>"), path


async def test_the_api_and_the_service_paths_are_never_the_page(web, built):
    for path in [
        "/api",
        "/api/v1",
        "/api/v1/nowhere",
        "/api/v2/vehicles",
        "/ingest/nowhere",
        "/health",
        "/health/nowhere",
        "/metrics/nowhere",
        "/.well-known/nowhere",
    ]:
        assert is_problem(await web.get(path), 404), path
    assert (await web.get("/health/liveness")).json()["status"] == "ok"
    metrics = await web.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    # Routed API paths still reach their service (and need their token).
    assert is_problem(await web.get("/api/v1/vehicles"), 401)


async def test_paths_cannot_escape_the_build(web, built, build_dir):
    (build_dir.parent / "secret.txt").write_text("not for you")
    for path in ["/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt"]:
        response = await web.get(path)
        assert "not for you" not in response.text, path


async def test_only_get_and_head_reach_the_page(web, built):
    response = await web.post("/vehicles", json={})
    assert is_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"

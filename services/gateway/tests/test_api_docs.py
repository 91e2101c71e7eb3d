"""`/api/v1/openapi.json` and `/api/v1/docs` through a real gateway.

Here auth is the real service, vehicle and location are stand-ins without an OpenAPI
document, and notification is down: the document holds auth's routes and names the one
service it could not reach. (tests/test_api_docs.py checks the whole platform's document.)
"""

import re
from urllib.parse import urljoin


async def test_the_combined_document_has_the_routed_paths_of_the_services_that_answered(client):
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Fleet Tracker API"
    assert document["info"]["x-unavailable-services"] == ["notification"]
    paths = document["paths"]
    assert "/api/v1/auth/login" in paths
    assert "/api/v1/users" in paths
    assert all(p.startswith(("/api/v1/", "/.well-known/")) for p in paths), sorted(paths)
    assert paths["/api/v1/auth/login"]["post"]["tags"] == ["auth"]


async def test_the_gateway_no_longer_documents_only_itself(client):
    # Not a document: a missing file of the dashboard (or the note that it is not built).
    assert (await client.get("/openapi.json")).status_code in (404, 503)
    # /docs is the dashboard's path now (its page, or the note saying how to build it).
    assert "SwaggerUIBundle" not in (await client.get("/docs")).text


async def test_the_docs_page_loads_everything_from_the_gateway(client):
    page = await client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/api/v1/openapi.json" in page.text
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(references) == 3  # script, stylesheet, icon
    for reference in references:
        url = urljoin(str(client.base_url) + "/api/v1/docs", reference)
        assert url.startswith(str(client.base_url)), f"{reference} is not served by the gateway"
        asset = await client.get(url)
        assert asset.status_code == 200, reference
    script = await client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert "SwaggerUIBundle" in script.text
    assert not re.search(r"https?://[^\"' ]*(cdn|unpkg|jsdelivr)", page.text)

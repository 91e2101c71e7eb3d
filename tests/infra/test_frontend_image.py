"""The dashboard's image: hadolint, a non-root nginx on 8080, and the start-up script that
writes the runtime configuration, run for real (outside a container)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
DOCKERFILE = FRONTEND / "Dockerfile"
CONFIG_SCRIPT = FRONTEND / "docker" / "40-fleet-config.sh"
NGINX_CONF = FRONTEND / "docker" / "nginx.conf"


def tool(name: str) -> str:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is not installed: run `uv sync --all-packages`")
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = []
    for line in DOCKERFILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            steps.append((keyword.upper(), arguments.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_passes():
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes():
    result = subprocess.run(
        [tool("shellcheck"), str(CONFIG_SCRIPT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_served_by_unprivileged_nginx_on_8080_with_the_build_and_the_config_script():
    steps = final_stage()
    keywords = {keyword: arguments for keyword, arguments in steps}
    assert keywords["FROM"].startswith("nginxinc/nginx-unprivileged:")
    assert keywords["USER"] == "101:101"
    assert keywords["EXPOSE"] == "8080"
    copies = [arguments for keyword, arguments in steps if keyword == "COPY"]
    assert "--from=build /app/dist /usr/share/nginx/html" in copies
    assert any(c.endswith("/docker-entrypoint.d/40-fleet-config.sh") for c in copies)
    assert os.access(CONFIG_SCRIPT, os.X_OK), "the nginx entrypoint runs only executable scripts"


def test_nginx_falls_back_to_index_caches_hashed_assets_and_never_the_config():
    conf = NGINX_CONF.read_text()
    assert "listen 8080;" in conf
    assert "try_files $uri /index.html;" in conf
    assets = conf.split("location /assets/", 1)[1].split("}", 1)[0]
    assert "max-age=31536000, immutable" in assets
    config = conf.split("location = /config.json", 1)[1].split("}", 1)[0]
    assert "alias /tmp/fleet-config/config.json;" in config
    assert "no-store" in config


def write_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(CONFIG_SCRIPT)],
        env={"PATH": os.environ["PATH"], "FLEET_CONFIG_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
    )


def test_the_config_script_writes_what_the_environment_says(tmp_path):
    result = write_config(
        tmp_path,
        FLEET_MAP_STYLE_URL="https://tiles.example.com/style.json?key=a&b=1",
        FLEET_API_BASE_URL="https://api.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "mapStyleUrl": "https://tiles.example.com/style.json?key=a&b=1",
        "apiBaseUrl": "https://api.example.com",
    }


def test_the_config_script_defaults_to_the_offline_map_and_same_origin(tmp_path):
    assert write_config(tmp_path).returncode == 0
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "mapStyleUrl": None,
        "apiBaseUrl": "",
    }


@pytest.mark.parametrize("value", ['https://x/"}, "evil": "1', "https://x/\\u0022", "a\nb"])
def test_the_config_script_refuses_values_that_could_break_the_json(tmp_path, value):
    result = write_config(tmp_path, FLEET_MAP_STYLE_URL=value)
    assert result.returncode != 0
    assert "plain URLs" in result.stderr
    assert not (tmp_path / "config.json").exists()

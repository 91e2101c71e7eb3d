"""infrastructure/scripts/deploy.sh (docker compose) and k8s-deploy.sh (the pipeline's
Kubernetes deploy), run for real with stand-ins for `docker`, `kubectl` and `kustomize` on PATH
that record their arguments and answer as a cluster would (no Docker engine or cluster here).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "infrastructure" / "scripts"
SECRET = "s3cr3t-value-that-must-never-be-printed-0123456789"

# Records each call as one JSON line of its arguments; answers what the deploy script asks.
FAKE_TOOL = """#!{python}
import json, os, sys
from pathlib import Path

name, args = Path(sys.argv[0]).name, sys.argv[1:]
state = Path(os.environ["FAKE_STATE"])
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps([name, *args]) + "\\n")
joined = " ".join(args)
if name == "kustomize" and args[0] == "build":
    print("kind: Rendered")
elif name == "kubectl":
    if "apply" in args and "app.kubernetes.io/component=service" in args:
        (state / "applied").touch()
    if "get" in args and "deployment,statefulset" in args:
        selector = args[args.index("--selector") + 1]
        if "generation" in joined:
            generation = 2 if (state / "applied").exists() else 1
            print(f"Deployment/gateway={{generation}}")
            # location's spec is the same before and after: this apply did not change it.
            print("StatefulSet/location=1")
        elif selector == "app.kubernetes.io/component=service":
            print("deployment.apps/gateway")
            print("statefulset.apps/location")
        else:
            print("statefulset.apps/postgres")
    elif "get" in args and args[args.index("get") + 1] == "job":
        print("job.batch/auth-migrate")
    elif "get" in args and args[args.index("get") + 1].startswith("job.batch/"):
        print(os.environ.get("JOB_STATE", "SuccessCriteriaMet Complete"), end="")
    elif "rollout" in args and args[args.index("rollout") + 1] == "status":
        target = args[args.index("status") + 1]
        if target == os.environ.get("FAIL_ROLLOUT") and not (state / "undone").exists():
            sys.exit(1)
    elif "rollout" in args and args[args.index("rollout") + 1] == "undo":
        (state / "undone").touch()
"""


@pytest.fixture
def fakes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "kubectl", "kustomize"):
        path = bin_dir / name
        path.write_text(FAKE_TOOL.format(python=sys.executable))
        path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()

    def run(script: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list]:
        environment = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FAKE_STATE": str(state),
            "ROLLOUT_TIMEOUT_S": "30",
            **env,
        }
        result = subprocess.run(
            ["bash", str(SCRIPTS / script), *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
            check=False,
        )
        log = state / "calls.jsonl"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return result, calls

    return run


# --- deploy.sh (docker compose) ------------------------------------------------------------


def required_variables() -> list[str]:
    text = (REPO / "docker-compose.prod.yml").read_text()
    return sorted(set(re.findall(r"\$\{([A-Z0-9_]+):\?", text)))


@pytest.fixture
def env_file(tmp_path):
    key = tmp_path / "signing-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    lines = [f"{name}={SECRET}" for name in required_variables()]
    lines.append(f'AUTH_SIGNING_KEY_PATH="{key}"')
    path = tmp_path / ".env.production"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compose_deploy_pulls_the_tag_and_waits_for_the_stack(fakes, env_file):
    result, calls = fakes(
        "deploy.sh", "production", "abc123", ENV_FILE=str(env_file), IMAGE_PREFIX="reg.test/ft"
    )
    assert result.returncode == 0, result.stderr
    commands = [call[call.index("compose") + 1 :] for call in calls]
    subcommands = [next(a for a in c if not a.startswith("-") and "/" not in a) for c in commands]
    assert subcommands == ["config", "pull", "up", "ps"]
    up = next(c for c in commands if "up" in c)
    assert {"--detach", "--no-build", "--wait"} <= set(up)
    first = calls[0]
    assert first[first.index("--env-file") + 1] == str(env_file)
    files = [first[i + 1] for i, a in enumerate(first) if a == "--file"]
    assert files[:2] == [str(REPO / "docker-compose.yml"), str(REPO / "docker-compose.prod.yml")]
    assert SECRET not in result.stdout + result.stderr


def test_compose_deploy_without_a_tag_builds_here(fakes, env_file):
    result, calls = fakes("deploy.sh", "production", ENV_FILE=str(env_file))
    assert result.returncode == 0, result.stderr
    up = next(c for c in calls if "up" in c)
    assert "--build" in up
    assert not [c for c in calls if "pull" in c]


def test_compose_deploy_fails_on_a_missing_env_file(fakes, tmp_path):
    result, calls = fakes("deploy.sh", "production", ENV_FILE=str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "no env file" in result.stderr
    assert calls == []


@pytest.mark.parametrize("variable", ["REDIS_PASSWORD", "NOTIFICATION_SMTP_PASSWORD"])
def test_compose_deploy_fails_on_a_missing_variable_and_names_only_it(fakes, env_file, variable):
    lines = env_file.read_text().splitlines()
    # Missing, or present but empty: both are refused.
    kept = [line if not line.startswith(f"{variable}=") else f"{variable}=" for line in lines]
    env_file.write_text("\n".join(kept) + "\n")
    result, calls = fakes("deploy.sh", "production", ENV_FILE=str(env_file))
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"does not set: {variable}")
    assert SECRET not in result.stdout + result.stderr
    assert calls == [], "nothing runs before every variable is there"


def test_compose_deploy_refuses_a_short_internal_token_without_printing_it(fakes, env_file):
    text = env_file.read_text().replace(
        f"INTERNAL_SERVICE_TOKEN={SECRET}", "INTERNAL_SERVICE_TOKEN=short-tok"
    )
    env_file.write_text(text)
    result, calls = fakes("deploy.sh", "production", ENV_FILE=str(env_file))
    assert result.returncode == 1
    assert "INTERNAL_SERVICE_TOKEN" in result.stderr
    assert "short-tok" not in result.stdout + result.stderr
    assert calls == []


def test_compose_deploy_fails_without_the_signing_key(fakes, env_file, tmp_path):
    text = env_file.read_text().replace(str(tmp_path / "signing-key.pem"), "/nonexistent/key.pem")
    env_file.write_text(text)
    result, calls = fakes("deploy.sh", "production", ENV_FILE=str(env_file))
    assert result.returncode == 1
    assert "signing key" in result.stderr
    assert calls == []


def test_compose_deploy_does_not_run_the_env_file(fakes, env_file, tmp_path):
    marker = tmp_path / "ran"
    env_file.write_text(env_file.read_text() + f"touch {marker}\n$(touch {marker})\n")
    result, _ = fakes("deploy.sh", "production", ENV_FILE=str(env_file))
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("args", [[], ["Prod uction"], ["production", "bad tag!"]])
def test_compose_deploy_refuses_bad_arguments(fakes, args):
    result, calls = fakes("deploy.sh", *args)
    assert result.returncode == 2
    assert calls == []


# --- k8s-deploy.sh (the pipeline) ----------------------------------------------------------


def kubectl_calls(calls: list) -> list[list[str]]:
    return [call[3:] for call in calls if call[0] == "kubectl"]  # after --namespace NS


def test_k8s_deploy_migrates_before_it_rolls_out(fakes):
    result, calls = fakes("k8s-deploy.sh", "staging", "0123abc", "reg.test/ft")
    assert result.returncode == 0, result.stderr
    assert all(call[1:3] == ["--namespace", "staging"] for call in calls if call[0] == "kubectl")
    edits = [call for call in calls if call[0] == "kustomize" and call[1] == "edit"]
    assert [e[-1] for e in edits] == [
        f"ghcr.io/fleet-tracker/fleet-tracker/{app}=reg.test/ft/{app}:0123abc"
        for app in (
            "gateway",
            "auth",
            "vehicle",
            "location",
            "notification",
            "frontend",
            "mosquitto",
        )
    ]
    steps = [
        (c[0], c[c.index("--selector") + 1] if "--selector" in c else c[-1])
        for c in kubectl_calls(calls)
        if c[0] in ("apply", "delete")
    ]
    assert steps == [
        ("apply", "app.kubernetes.io/component notin (service,migration)"),
        ("delete", "app.kubernetes.io/component=migration"),
        ("apply", "app.kubernetes.io/component=migration"),
        ("apply", "app.kubernetes.io/component=service"),
    ]
    statuses = [c[2] for c in kubectl_calls(calls) if c[:2] == ["rollout", "status"]]
    assert statuses == [
        "statefulset.apps/postgres",
        "deployment.apps/gateway",
        "statefulset.apps/location",
    ]
    assert not [c for c in kubectl_calls(calls) if c[:2] == ["rollout", "undo"]]
    # The checkout's overlay is left as it is: the edits went to a copy.
    assert "0123abc" not in (REPO / "kubernetes/overlays/staging/kustomization.yaml").read_text()


def test_k8s_deploy_stops_before_the_rollout_when_a_migration_fails(fakes):
    result, calls = fakes("k8s-deploy.sh", "production", "0123abc", JOB_STATE="Failed")
    assert result.returncode == 1
    assert "job.batch/auth-migrate failed" in result.stderr
    assert [c for c in kubectl_calls(calls) if c[0] == "logs"]
    applied = [c for c in kubectl_calls(calls) if c[0] == "apply"]
    assert "app.kubernetes.io/component=service" not in [a for c in applied for a in c]


def test_k8s_deploy_rolls_back_what_it_changed_when_a_rollout_fails(fakes):
    result, calls = fakes(
        "k8s-deploy.sh", "staging", "0123abc", FAIL_ROLLOUT="deployment.apps/gateway"
    )
    assert result.returncode == 1
    undone = [c[2] for c in kubectl_calls(calls) if c[:2] == ["rollout", "undo"]]
    # location's spec did not change in this apply (its generation stayed): it is left alone.
    assert undone == ["deployment/gateway"]


def test_k8s_deploy_refuses_an_unknown_environment(fakes):
    result, calls = fakes("k8s-deploy.sh", "qa", "0123abc")
    assert result.returncode == 2
    assert calls == []


def test_scripts_pass_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    for script in SCRIPTS.glob("*.sh"):
        result = subprocess.run(
            # -x: follow what a script sources (backup-metrics.sh), as its directive says.
            [str(shellcheck), "-x", str(script)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout
    assert os.access(SCRIPTS / "deploy.sh", os.X_OK)

"""A newcomer's first run (issue 11): the README's own commands in a fresh clone in a private
folder, as root and as an ordinary user after `sudo make bootstrap` once.

The checkout is cloned from this repository's HEAD (a clean clone in CI), so what is tested is
what a user would get. Every URL the start-up banner prints must answer, the demo org that
`SIMULATE=1` prints must sign in, and `make stop` must leave nothing running.
"""

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from fleet_devstack.servers import free_port, server_dir
from fleet_devstack.stack import REPO_ROOT, SERVICE_PORTS

NEWCOMER = "fleet-newcomer"
README = (REPO_ROOT / "README.md").read_text()
BANNER_START = "Fleet Tracker is up:"
BANNER_END = "Ctrl-C (or `make stop`) stops everything."
SIGN_IN = re.compile(r"sign in as (\S+) / (\S+)")


def test_readme_gives_the_commands_this_test_runs():
    for command in ("make run", "make stop", "SIMULATE=5 make run", "sudo make bootstrap"):
        assert command in README, f"README no longer says `{command}`"


class Output:
    """The lines a command prints, read as they come."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in iter(process.stdout.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, done, process: subprocess.Popen, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self.lines):
            if process.poll() is not None:
                time.sleep(0.5)  # the reader's last lines
                pytest.fail(f"`make run` exited with {process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"`make run` not ready within {timeout_s}s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self, count: int = 60) -> str:
        return "\n".join(self.lines[-count:])


def _banner(lines: list[str]) -> list[str]:
    start = lines.index(BANNER_START)
    return lines[start + 1 : lines.index(BANNER_END, start)]


def _ready(lines: list[str]) -> bool:
    return BANNER_END in lines and any(SIGN_IN.search(line) for line in lines)


def _newcomer() -> pwd.struct_passwd:
    """An ordinary user with a private home; kept between runs (its uv cache with it)."""
    try:
        entry = pwd.getpwnam(NEWCOMER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", NEWCOMER], check=True)
        entry = pwd.getpwnam(NEWCOMER)
    os.chmod(entry.pw_dir, 0o700)
    return entry


def _as(user: pwd.struct_passwd | None, command: list[str], env: dict[str, str]) -> list[str]:
    if user is None:
        return command
    # As a login shell would give it: the machine's settings (a CA bundle, a proxy), none of
    # root's own (its PATH, HOME, pyenv, this test's virtual environment).
    machine = {
        k: v
        for k, v in os.environ.items()
        if "/root" not in v and k not in {"VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MFLAGS"}
    }
    clean = {
        **machine,
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }
    settings = [f"{k}={v}" for k, v in {**clean, **env}.items()]
    return [shutil.which("runuser"), "-u", user.pw_name, "--", "env", "-i", *settings, *command]


def _processes_under(folder: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(f"{proc.name}: {cmdline}")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("who", ["root", "ordinary user"])
def test_newcomer_runs_the_stack_from_a_private_folder(who):
    if os.geteuid() != 0:
        pytest.fail("this test creates a user and runs `make run` as root: run `make test` as root")
    user = _newcomer() if who == "ordinary user" else None
    parent = Path(tempfile.mkdtemp(prefix="fleet-first-run-", dir=user and user.pw_dir))
    assert parent.stat().st_mode & 0o777 == 0o700
    checkout = parent / "fleet-tracker"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(checkout)], check=True)
    if user is not None:
        shutil.chown(parent, user.pw_uid, user.pw_gid)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(checkout)], check=True)
    server_ports = {name: free_port() for name in ("POSTGRES", "REDIS", "MQTT")}
    service_ports = {name: free_port() for name in SERVICE_PORTS}
    env = {
        "SIMULATE": "1",
        **{f"FLEET_DEV_{name}_PORT": str(port) for name, port in server_ports.items()},
        **{f"FLEET_DEV_{name.upper()}_PORT": str(port) for name, port in service_ports.items()},
    }
    # Servers that cannot enter the private folder keep their data elsewhere: found before
    # the run so that it is removed afterwards.
    state = checkout / ".state"
    data_home = state if user else server_dir(state, "postgres", "postgres").parent
    # A newcomer's shell, not this test's virtual environment.
    run_env = (
        env if user else {k: v for k, v in {**os.environ, **env}.items() if k != "VIRTUAL_ENV"}
    )
    process = subprocess.Popen(
        _as(user, ["make", "run"], env),
        cwd=checkout,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    try:
        # A fresh clone installs and builds the dashboard first (npm ci, vite build).
        output.wait_for(_ready, process, timeout_s=900 if user else 480)
        banner = _banner(output.lines)
        urls = [u for line in banner for u in re.findall(r"http://\S+", line) if "..." not in u]
        assert urls, f"the banner lists no URL:\n{banner}"
        for url in urls:
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200, f"{url} answers {response.status_code}"
        broker = next(line for line in banner if "MQTT broker" in line)
        host, port = re.search(r"(\S+):(\d+)", broker.split("MQTT broker", 1)[1]).groups()
        assert int(port) == server_ports["MQTT"]
        socket.create_connection((host, int(port)), timeout=5).close()

        email, password = next(filter(None, map(SIGN_IN.search, output.lines))).groups()
        gateway = f"http://127.0.0.1:{service_ports['gateway']}/api/v1"
        login = httpx.post(f"{gateway}/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        vehicles = httpx.get(f"{gateway}/vehicles", headers={"Authorization": f"Bearer {token}"})
        assert vehicles.status_code == 200
        assert len(vehicles.json()["items"]) == 1

        stop = subprocess.run(
            _as(user, ["make", "stop"], env),
            cwd=checkout,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert process.wait(90) == 0, output.tail()
        time.sleep(0.5)
        # The last line of the stack's own (a make run from inside make adds its own lines).
        assert [line for line in output.lines if not line.startswith("make")][-1] == "stopped"
        assert _processes_under(checkout) == []
        assert _processes_under(data_home) == []
        busy = [p for p in [*server_ports.values(), *service_ports.values()] if _listening(p)]
        assert busy == []
    finally:
        if process.poll() is None:
            subprocess.run(_as(user, ["make", "stop"], env), cwd=checkout, env=run_env, check=False)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
        shutil.rmtree(data_home, ignore_errors=True)
        shutil.rmtree(parent, ignore_errors=True)

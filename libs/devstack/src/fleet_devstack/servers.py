"""Start and stop the project's own PostgreSQL, Redis and Mosquitto instances."""

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit


class StackError(RuntimeError):
    pass


# Ports are picked below the kernel's ephemeral range: a port picked inside it (bind to 0) can
# be taken, before its server binds it, as the source port of any outgoing connection, and the
# server then fails to start ("address already in use"). Each pytest-xdist worker picks from
# its own slice, and a process never hands out one port twice, so that two picks waiting for
# their servers never collide.
_PORTS_LOW = 10_000
_SLICES = 8
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % _SLICES if worker.isdigit() else 0
    size = (_ephemeral_low() - _PORTS_LOW) // _SLICES
    return range(_PORTS_LOW + index * size, _PORTS_LOW + (index + 1) * size)


def free_port() -> int:
    ports = _port_slice()
    for _ in range(10 * len(ports)):
        port = secrets.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise StackError(f"no free port in {ports.start}-{ports.stop - 1}")


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise StackError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def _as_user(user: str) -> list[str]:
    """PostgreSQL refuses to run as root and Mosquitto drops privileges: run them as their user."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _system_tool(name: str) -> str:
    """A server binary by name; Debian keeps some in /usr/sbin, off an ordinary user's PATH."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin") or name


def reachable_by(path: Path, user: str) -> bool:
    """Whether `user` can enter `path` (every folder above it must let them through)."""
    if os.geteuid() != 0:
        return True  # the servers run as the caller, who reached the path already
    probe = path if path.exists() else path.parent
    result = subprocess.run(
        [*_as_user(user), "test", "-x", str(probe)], cwd="/", capture_output=True, check=False
    )
    return result.returncode == 0


# Where root keeps a server's data when the checkout is in a folder the server's own user
# cannot enter (a 0700 home such as /root, a `mktemp -d`): a folder per checkout, owned by
# root and open for traversal only; each server's folder inside it belongs to its user, 0700.
PRIVATE_CHECKOUT_DATA = Path("/var/lib/fleet-devstack")


def server_dir(state_dir: Path, name: str, user: str) -> Path:
    """`state_dir/name`, or where `user` can reach it when it cannot reach `state_dir`."""
    wanted = state_dir / name
    if reachable_by(state_dir, user):
        return wanted
    checkout = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    home = PRIVATE_CHECKOUT_DATA / f"{state_dir.resolve().parent.name}-{checkout}"
    home.mkdir(parents=True, exist_ok=True)
    for folder in (PRIVATE_CHECKOUT_DATA, home):
        folder.chmod(0o711)
    return home / name


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, entry.pw_uid, entry.pw_gid)


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    # From "/": a server run as its own user may not be allowed into the caller's folder.
    kwargs.setdefault("cwd", "/")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def postgres_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise StackError("PostgreSQL server binaries not found; run `make bootstrap` as root")
    return Path(found[-1]).parent


@dataclass
class Postgres:
    """A PostgreSQL cluster in `data_dir`, password-authenticated, listening on 127.0.0.1."""

    data_dir: Path
    port: int
    password: str
    durable: bool = True
    user: str = "fleet"
    host: str = "127.0.0.1"

    @classmethod
    def external(cls, dsn: str) -> "Postgres":
        """A server we did not start (TEST_POSTGRES_URL): used, never stopped."""
        parts = urlsplit(dsn)
        return cls(
            Path("/nonexistent"),
            parts.port or 5432,
            unquote(parts.password or ""),
            user=unquote(parts.username or "postgres"),
            host=parts.hostname or "127.0.0.1",
        )

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        password = quote(self.password, safe="")
        return f"{driver}://{self.user}:{password}@{self.host}:{self.port}/{database}"

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return _run([*_as_user("postgres"), str(postgres_bindir() / tool), *args])

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        # The password file lives in a private temporary folder of the server's user: never
        # beside the data, where the caller's folder may not let that user in.
        pwdir = Path(tempfile.mkdtemp(prefix="fleet-initdb-"))
        pwfile = pwdir / "password"
        pwfile.write_text(self.password)
        _chown(self.data_dir, "postgres")
        _chown(pwdir, "postgres")
        try:
            self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            shutil.rmtree(pwdir, ignore_errors=True)
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            # No Unix socket: its default directory may belong to the machine's own server.
            "unix_socket_directories = ''",
            "max_connections = 300",
            "shared_buffers = 256MB",
        ]
        if not self.durable:
            # Throwaway test clusters: durability only costs time.
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# fleet-devstack\n" + "\n".join(settings) + "\n")

    def start(self) -> None:
        if self.running():
            return
        if port_in_use(self.port):
            raise StackError(f"port {self.port} is taken by another program; set another port")
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {self.port}",
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if self.running():
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        pidfile = self.data_dir / "postmaster.pid"
        return pidfile.exists() and _pid_alive(int(pidfile.read_text().split()[0]))

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        return _run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            env=env,
        ).stdout

    def create_database(self, name: str, *, postgis: bool = False) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists.strip():
            self.psql(f'CREATE DATABASE "{name}"')
        if postgis:
            self.psql("CREATE EXTENSION IF NOT EXISTS postgis", database=name)


@dataclass
class Redis:
    data_dir: Path
    port: int
    durable: bool = True
    external_url: str | None = None
    extra_args: tuple[str, ...] = ()  # more redis-server options

    @property
    def url(self) -> str:
        return self.external_url or f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def start(self) -> None:
        if self.running():
            return
        if port_in_use(self.port):
            raise StackError(f"port {self.port} is taken by another program; set another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes"] if self.durable else ["--save", "", "--appendonly", "no"]
        )
        _run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(self.data_dir),
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.data_dir / "redis.log"),
                *persistence,
                *self.extra_args,
            ]
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        _terminate_pidfile(self.pidfile)

    def running(self) -> bool:
        return self.pidfile.exists() and _pid_alive(int(self.pidfile.read_text().strip() or 0))


class RedisCluster:
    """A Redis Cluster of `len(ports)` primaries and no replicas, every slot assigned, as a
    managed Redis Cluster looks to a client (which is told the cluster's URL: any node)."""

    def __init__(self, data_dir: Path, ports: list[int]) -> None:
        self.nodes = [
            Redis(
                data_dir / f"node-{port}",
                port,
                durable=False,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    # Its own bus port: the default, port + 10000, is past 65535 for many.
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-config-file",
                    str(data_dir / f"node-{port}" / "nodes.conf"),
                ),
            )
            for port in ports
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        _run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ]
        )
        # Every node must have learnt the slot map before a client is given one of them.
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            while (
                "cluster_state:ok"
                not in _run(["redis-cli", "-p", str(node.port), "cluster", "info"]).stdout
            ):
                if time.monotonic() > deadline:
                    raise StackError(f"the cluster on {addresses} never became ready")
                time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class PgBouncer:
    """Debian's PgBouncer in transaction pooling mode in front of `upstream`, every database.

    As the Kubernetes manifests run it (kubernetes/base/*-pgbouncer-configmap.yaml): clients
    log in with SCRAM as the server's user, and PgBouncer logs in to the server the same way.
    """

    data_dir: Path
    port: int
    upstream: Postgres

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "pgbouncer.pid"

    def url(self, database: str) -> str:
        return self.upstream.url(database).replace(
            f"@{self.upstream.host}:{self.upstream.port}/", f"@127.0.0.1:{self.port}/"
        )

    def start(self) -> None:
        if self.running():
            return
        if port_in_use(self.port):
            raise StackError(f"port {self.port} is taken by another program; set another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = self.upstream.password.replace('"', '""')
        (self.data_dir / "userlist.txt").write_text(f'"{self.upstream.user}" "{password}"\n')
        (self.data_dir / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={self.upstream.host} port={self.upstream.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.data_dir / "userlist.txt"}
pool_mode = transaction
default_pool_size = 10
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = {self.data_dir / "pgbouncer.log"}
pidfile = {self.pidfile}
"""
        )
        self.data_dir.chmod(0o700)
        # It refuses to run as root: like PostgreSQL, as the postgres user.
        _chown(self.data_dir, "postgres")
        _run([*_as_user("postgres"), "pgbouncer", "-d", str(self.data_dir / "pgbouncer.ini")])
        wait_for_port(self.port)

    def stop(self) -> None:
        _terminate_pidfile(self.pidfile)

    def running(self) -> bool:
        return self.pidfile.exists() and _pid_alive(int(self.pidfile.read_text().strip() or 0))


def dynsec_plugin() -> str:
    for pattern in (
        "/usr/lib/*/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
    ):
        found = glob.glob(pattern)
        if found:
            return found[0]
    raise StackError("Mosquitto's dynamic-security plugin not found; run `make bootstrap` as root")


RESTORE_SHARED_SUBSCRIPTIONS = (
    Path(__file__).resolve().parents[4] / "infrastructure/mosquitto/restore_shared_subscriptions.py"
)
# Where the location service keeps its retained shared-subscription manifests.
MANIFEST_TOPICS = "fleet-internal/shared-subscriptions/#"


@dataclass
class Mosquitto:
    """A Mosquitto broker with persistence, no anonymous access and dynamic security.

    Two service clients are created on first start: an admin that manages device credentials
    (the vehicle service) and an ingest client that may subscribe to every device's topics
    (the location service).
    """

    data_dir: Path
    port: int
    admin_password: str
    ingest_password: str
    admin_username: str = "fleet-admin"
    ingest_username: str = "fleet-location"
    host: str = "127.0.0.1"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "mosquitto.pid"

    @property
    def persistence_file(self) -> Path:
        return self.data_dir / "mosquitto.db"

    @property
    def dynsec_file(self) -> Path:
        return self.data_dir / "dynamic-security.json"

    def _write_config(self) -> Path:
        conf = self.data_dir / "mosquitto.conf"
        lines = [
            f"pid_file {self.pidfile}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            f"log_dest file {self.data_dir}/mosquitto.log",
            "per_listener_settings false",
            "allow_anonymous false",
            f"listener {self.port} 127.0.0.1",
            # As infrastructure/mosquitto/mosquitto.conf (see there); a test keeps them equal.
            "max_inflight_messages 20000",
            "max_queued_messages 0",
            "max_queued_bytes 134217728",
            "autosave_interval 1",
            f"plugin {dynsec_plugin()}",
            f"plugin_opt_config_file {self.dynsec_file}",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user mosquitto")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        if self.running():
            return
        if port_in_use(self.port):
            raise StackError(f"port {self.port} is taken by another program; set another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # device credentials (dynamic-security.json) are in it
        first_start = not self.dynsec_file.exists()
        if first_start:
            _run(
                [
                    "mosquitto_ctrl",
                    "dynsec",
                    "init",
                    str(self.dynsec_file),
                    self.admin_username,
                    self.admin_password,
                ]
            )
        conf = self._write_config()
        # Mosquitto 2.0 does not save shared subscriptions: put them back first (see there).
        _run([sys.executable, str(RESTORE_SHARED_SUBSCRIPTIONS), str(self.persistence_file)])
        _chown(self.data_dir, "mosquitto")
        _run([_system_tool("mosquitto"), "-c", str(conf), "-d"])
        wait_for_port(self.port)
        if first_start:
            self._create_ingest_client()
            self._give_admin_the_commands_role()
        # Also on a state folder made before the ingest role could publish its manifests.
        self.ctrl("addRoleACL", "fleet-ingest", "publishClientSend", MANIFEST_TOPICS, "allow")

    def ctrl(self, *args: str) -> str:
        return _run(
            [
                "mosquitto_ctrl",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-u",
                self.admin_username,
                "-P",
                self.admin_password,
                "dynsec",
                *args,
            ]
        ).stdout

    def _give_admin_the_commands_role(self) -> None:
        """The vehicle service's commands role, as fleet_vehicle.commands.transport defines it.

        Given at provisioning: added later, at run time, Mosquitto would disconnect the admin
        client it is added to (the vehicle service then reconnects, but a request in between
        finds no broker).
        """
        self.ctrl("createRole", "fleet-commands")
        self.ctrl("addRoleACL", "fleet-commands", "publishClientSend", "fleet/+/commands", "allow")
        for topic in ("fleet/+/commands/result", "fleet/+/status"):
            self.ctrl("addRoleACL", "fleet-commands", "subscribePattern", topic, "allow")
        self.ctrl("addClientRole", self.admin_username, "fleet-commands")

    def _create_ingest_client(self) -> None:
        self.ctrl("createRole", "fleet-ingest")
        for acl in ("subscribePattern", "subscribeLiteral"):
            self.ctrl("addRoleACL", "fleet-ingest", acl, "#", "allow")
        self.ctrl("createClient", self.ingest_username, "-p", self.ingest_password)
        self.ctrl("addClientRole", self.ingest_username, "fleet-ingest")

    def stop(self) -> None:
        _terminate_pidfile(self.pidfile)

    def running(self) -> bool:
        return self.pidfile.exists() and _pid_alive(int(self.pidfile.read_text().strip() or 0))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate_pidfile(pidfile: Path, timeout_s: float = 15.0) -> None:
    if not pidfile.exists():
        return
    text = pidfile.read_text().strip()
    pid = int(text) if text else 0
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


@dataclass
class Secrets:
    """Generated credentials, kept in the state folder so a restart finds its data again."""

    values: dict[str, str]

    @classmethod
    def load(cls, path: Path, names: list[str]) -> "Secrets":
        values = json.loads(path.read_text()) if path.exists() else {}
        changed = False
        for name in names:
            if name not in values:
                values[name] = secrets.token_urlsafe(24)
                changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2))
            path.chmod(0o600)
        return cls(values)

    def __getitem__(self, name: str) -> str:
        return self.values[name]


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

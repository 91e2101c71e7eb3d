"""Gunicorn settings shared by every service image.

Each image's command gives the bind address and the app; gunicorn itself reads the worker
count from WEB_CONCURRENCY and the proxies it trusts from FORWARDED_ALLOW_IPS.
"""

import itertools
import os
from pathlib import Path

from prometheus_client import multiprocess

worker_class = "uvicorn_worker.UvicornWorker"

# Worker heartbeats go to a file; on the container's overlay filesystem a slow write can make
# the arbiter take a busy worker for a hung one and kill it. /dev/shm is memory.
worker_tmp_dir = "/dev/shm"  # noqa: S108 -- memory for heartbeats, not a shared temp file

# Requests are logged by the app as structured JSON with their request id; gunicorn's access
# log would log each one a second time, unstructured.
accesslog = None
errorlog = "-"

# Room for a request in flight to finish when the container is stopped (compose waits 10 s
# before SIGKILL by default; stop_grace_period in compose raises that).
graceful_timeout = 20

# Idle keep-alive connections are closed by the client first, never by the server while the
# client may be sending on one (a lost request): longer than the services' client side
# (fleet_common.http.UPSTREAM_KEEPALIVE_S, 3 s) and than ingress-nginx's upstream keep-alive
# timeout (60 s) in front of the gateway. Gunicorn's default is 2 s.
keepalive = 75

# Nobody runs gunicornc inside a container, and the socket would need a writable $HOME.
control_socket_disable = True


def on_starting(server):
    """Remove a drain file a previous container left: /tmp (an emptyDir) outlives a restart,
    and the new workers would otherwise drain from the start (fleet_common.drain)."""
    if drain_file := os.environ.get("DRAIN_FILE"):
        Path(drain_file).unlink(missing_ok=True)


# Each worker gets a slot, 0 .. workers-1, exported as FLEET_WORKER_SLOT: the lowest slot no
# live worker holds, so a replacement for a dead worker takes over the dead one's slot. The
# location service makes it part of its MQTT client id: two workers with one client id would
# take over each other's broker session forever, while a per-worker id that a replacement
# inherits resumes the dead worker's session and gets its unacknowledged messages again.
# (A pid would not do: it changes with every replacement.) On a reload (HUP) the new workers
# start before the old ones stop and get the next slots; the old slots' sessions wait on the
# broker until a restart brings those slots back. The app must be loaded in the worker, after
# post_fork (no preload_app), for its settings to see the variable.
def pre_fork(server, worker):
    taken = {sibling.slot for sibling in server.WORKERS.values()}
    worker.slot = next(slot for slot in itertools.count() if slot not in taken)


def post_fork(server, worker):
    os.environ["FLEET_WORKER_SLOT"] = str(worker.slot)
    server.log.info("Worker (pid:%s) has slot %s", worker.pid, worker.slot)


def child_exit(server, worker):
    """Drop a dead worker's live gauges so /metrics stops reporting them."""
    multiprocess.mark_process_dead(worker.pid)

"""Gunicorn settings shared by every service image.

Each image's command gives the bind address and the app; gunicorn itself reads the worker
count from WEB_CONCURRENCY and the proxies it trusts from FORWARDED_ALLOW_IPS.
"""

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

# Nobody runs gunicornc inside a container, and the socket would need a writable $HOME.
control_socket_disable = True


def child_exit(server, worker):
    """Drop a dead worker's live gauges so /metrics stops reporting them."""
    multiprocess.mark_process_dead(worker.pid)

"""Draining before a stop, so that no client is cut off mid-request by a rolling update.

Kubernetes runs a pod's preStop hook some seconds before it sends SIGTERM; the hook creates
DRAIN_FILE (a file on the pod's /tmp, which every gunicorn worker sees, where an HTTP hook
would reach one worker only). From then on the instance answers readiness 503 and sends
`Connection: close` with every response: a client's pooled keep-alive connection to it is
closed by the client after its next answer, not reused. An idle one the client drops on its
own, after its keep-alive expiry (`fleet_common.http.UPSTREAM_KEEPALIVE_S`, shorter than the
preStop pause). At SIGTERM no client holds an idle connection to the instance, so none can
send a request on a connection uvicorn is closing: the race in which a request was lost (502),
and only a request without a body could safely be sent again.

Once draining, an instance stays so: it is about to stop. The gunicorn master removes a stale
file at start-up (infrastructure/docker/gunicorn.conf.py): /tmp outlives a container restart.
"""

import asyncio
from pathlib import Path

from fleet_common.logging import get_logger

log = get_logger(__name__)

# How often each process looks for the file: small beside the preStop pause.
DRAIN_POLL_INTERVAL_S = 0.25


class Drain:
    """Whether this instance is draining; `watch()` turns it on when `path` appears."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.active = False

    async def watch(self) -> None:
        if self.path is None:
            return
        # Polled: the file is made by another process (the hook), which cannot set an Event.
        while not self.path.exists():  # noqa: ASYNC110
            await asyncio.sleep(DRAIN_POLL_INTERVAL_S)
        self.active = True
        log.info("draining: readiness fails and every connection closes after its response")

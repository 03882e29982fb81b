"""Before `attribution dev` starts the Dagster webserver and daemon: refuse, in one
line, a port that is taken or storage that another daemon already serves.

`dagster dev` on a taken port prints the webserver's error and keeps its daemon
running without a UI; a second `make dev` on the same storage would be a second
daemon ticking the same sensors and schedules. Both are caught here, before exec.
"""

from __future__ import annotations

import socket
import time

from orchestration.instance import instance_ref, open_instance
from platform_core.database import DatabaseError
from platform_core.settings import Settings

# The daemon writes a heartbeat every few seconds; one this recent means it runs.
HEARTBEAT_FRESH_SECONDS = 60.0


def port_problem(host: str, port: int) -> str | None:
    """Why the webserver could not listen on host:port, or None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return (
                f"port {port} on {host} is not free ({exc.strerror}): is another `make dev`"
                f" running? Choose another with `make dev PORT={port + 1}`"
            )
    return None


def running_daemon(settings: Settings, platform_url: str, now: float | None = None) -> str | None:
    """A daemon of this Dagster storage that sent a heartbeat in the last minute, or None."""
    now = time.time() if now is None else now
    with open_instance(instance_ref(settings, platform_url)) as instance:
        beats = instance.get_daemon_heartbeats()
    fresh = [b for b in beats.values() if now - b.timestamp < HEARTBEAT_FRESH_SECONDS]
    if not fresh:
        return None
    newest = max(fresh, key=lambda b: b.timestamp)
    return (
        f"a Dagster daemon already serves this storage ({newest.daemon_type} heartbeat"
        f" {now - newest.timestamp:.0f} s ago): another `make dev` or `dagster-daemon run` is"
        " running; stop it first (two daemons would run every sensor and schedule twice)"
    )


def refuse_to_start(settings: Settings, platform_url: str, host: str, port: int) -> None:
    """Raise DatabaseError (printed as one `error:` line, exit 2) when dev cannot start."""
    problem = port_problem(host, port) or running_daemon(settings, platform_url)
    if problem:
        raise DatabaseError(problem)

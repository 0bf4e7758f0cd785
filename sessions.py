"""How long PostgreSQL and a worker host wait on each other across a network that went silent.

A worker holds its tasks, limit slots and elections as session advisory locks: PostgreSQL frees
them when the session ends. A host that dies cut off from the server (power loss, kernel panic)
sends no reset, so with Linux's defaults the server notices only after its TCP keepalive, over two
hours later, and the host's tasks stay started all that time. Every session of a worker and of
beat therefore asks the server to probe it after a few idle seconds and to give up after
``celery_host_timeout`` seconds without an answer, or with data unacknowledged that long
(``tcp_keepalives_*`` and ``tcp_user_timeout``: settings any user may set, here through libpq's
``PGOPTIONS``, so Odoo's own cursors get them too). A live host's kernel answers the probes
whatever its processes do, so a busy worker is never cut; one cut off longer than that loses its
sessions, and another host takes its tasks (their fences keep the late one from committing:
task_record.FINISH_STARTED).

The worker's main process bounds its own waits the same way on the connections it opens
(:func:`client_parameters`), so an unreachable server fails its statements instead of hanging them.
Unix-socket sessions ignore these settings: a process that dies on the server's host closes them.
"""

import os

from . import config


def _timings():
    """(idle, interval, count) of the keepalive probes, and the timeout in seconds they add up to."""
    timeout = max(4, int(config.addon_option("host_timeout")))
    idle = timeout // 2
    count = 4
    interval = max(1, (timeout - idle) // count)
    return idle, interval, count, timeout


def server_options():
    """The ``-c`` options that make the server end a silent worker session after ``celery_host_timeout``."""
    idle, interval, count, timeout = _timings()
    return (
        f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
        f"-c tcp_keepalives_count={count} -c tcp_user_timeout={timeout * 1000}"
    )


def apply_to_process():
    """Every PostgreSQL session this process opens from now on carries :func:`server_options`."""
    own = server_options()
    current = os.environ.get("PGOPTIONS", "")
    if own not in current:
        os.environ["PGOPTIONS"] = f"{current} {own}".strip()


def client_parameters():
    """libpq parameters that bound this side's waits on an unreachable server to about ``celery_host_timeout``."""
    idle, interval, count, timeout = _timings()
    return {
        "connect_timeout": max(2, timeout // 4),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "tcp_user_timeout": timeout * 1000,
    }

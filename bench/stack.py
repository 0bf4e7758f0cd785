"""The real parts a benchmark run owns: its databases, brokers' queues and worker processes.

Kept apart from tests/harness.py on purpose (a few helpers are copied): the benchmark must keep
working while the test suite changes, and it must never touch the tests' databases, queues or
Redis databases (14-15, ``ct-test-*``).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import psycopg2
from kombu import Exchange, Queue

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BENCH_ADDONS = BENCH / "addons"
REDIS = os.environ.get("CT_BENCH_REDIS", "redis://127.0.0.1:6379")
AMQP = os.environ.get("CT_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_DBS = {"ours": 10, "raw": 11, "floor": 12}
SERVICES = {"PostgreSQL": 5432, "Redis": 6379, "RabbitMQ": 5672}


def broker_url(broker, side):
    """Each side gets its own Redis database; on RabbitMQ distinct queue names keep them apart."""
    return f"{REDIS}/{REDIS_DBS[side]}" if broker == "redis" else AMQP


def check_services(brokers):
    """PostgreSQL and Redis (the result backend) always; RabbitMQ only when it is benchmarked."""
    for service, port in SERVICES.items():
        if service == "RabbitMQ" and "rabbitmq" not in brokers:
            continue
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                raise SystemExit(f"{service} is not listening on 127.0.0.1:{port}")


def wait_for(predicate, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def odoo_root():
    """The ``odoo`` package's folder (19.0's odoo package has no ``__file__``)."""
    import odoo.release

    return Path(odoo.release.__file__).resolve().parent


class Home:
    """A scratch folder: Odoo config, the addons path (this checkout as ``celery_task``), logs."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="ct_bench_"))
        addons = self.root / "addons"
        addons.mkdir()
        (addons / "celery_task").symlink_to(REPO)
        root = odoo_root()
        paths = [root / "addons", root.parent / "addons", addons, BENCH_ADDONS, pip_addons()]
        self.addons_path = ",".join(str(path) for path in paths if path.is_dir())

    def write_config(self, dbname, name="odoo.conf", sections=None, **options):
        """An Odoo config; ``dbname`` None leaves ``db_name`` unset; ``sections``: {name: {key: value}} after it."""
        lines = [
            "[options]",
            f"addons_path = {self.addons_path}",
            *([f"db_name = {dbname}"] if dbname else []),
            "without_demo = all",
            "log_level = warn",
            *(f"{key} = {value}" for key, value in options.items()),
        ]
        for section, values in (sections or {}).items():
            lines += [f"[{section}]", *(f"{key} = {value}" for key, value in values.items())]
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def create_odoo_database(config_path, dbname, module, log_path):
    """Install ``module`` with Odoo's own command line, as a deployment would."""
    drop_database(dbname)
    with open(log_path, "w") as log:
        subprocess.run(
            [sys.executable, "-m", "odoo", "-c", str(config_path), "-d", dbname, "-i", module, "--stop-after-init"],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),
        )


def pip_addons():
    """Where pip installs Odoo addons (``odoo-addon-queue-job`` lands in ``site-packages/odoo/addons``)."""
    return Path(sysconfig.get_paths()["purelib"]) / "odoo" / "addons"


def copy_database(template, dbname):
    """``createdb -T``: a copy of an installed database (``template`` must have no open connection)."""
    drop_database(dbname)
    subprocess.run(["createdb", "-T", template, dbname], check=True, capture_output=True)


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_raw_database(dbname, table, rows):
    """The raw baseline's table: ``rows`` rows the raw tasks update by id."""
    drop_database(dbname)
    subprocess.run(["createdb", dbname], check=True, capture_output=True)
    with contextlib.closing(psycopg2.connect(dbname=dbname)) as conn, conn, conn.cursor() as cr:
        cr.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, value integer, started double precision)")
        cr.execute(f"INSERT INTO {table} (value) SELECT 0 FROM generate_series(1, %s)", [rows])


def drop_database(dbname):
    subprocess.run(["dropdb", "--if-exists", "--force", dbname], check=True, capture_output=True)


def machine_cpu_seconds():
    """(busy, stolen) CPU seconds of the whole machine so far: every process, PostgreSQL and brokers included.

    Steal is time the hypervisor gave this VM's CPUs to someone else: a run with a lot of it is noisy.
    """
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


SERVICE_PROCESSES = {"postgres": ("postgres",), "broker": ("redis-server", "beam.smp", "erl_child_setup")}


def process_cpu_seconds(pid, reaped=False):
    """User and system CPU seconds of one process so far (0 for one that is gone); with ``reaped``, also those
    of its children that have exited and that it has waited for."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(value) for value in fields[11 : 15 if reaped else 13])
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def service_cpu_seconds():
    """CPU seconds so far of PostgreSQL's processes and of the broker's, by name: where a drain's machine
    CPU goes besides the worker. PostgreSQL's backends that exited count too (through the postmaster,
    which reaps them): a client that connects for each request pays in backends that do not stay."""
    totals = dict.fromkeys(SERVICE_PROCESSES, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            name = (entry / "comm").read_text().strip()
            for service, names in SERVICE_PROCESSES.items():
                if name in names:
                    totals[service] += process_cpu_seconds(entry.name, reaped=True)
    return totals


def memory(pid):
    """Peak and current RSS, and PSS (RSS with shared pages split among their sharers), in MiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    pss = next(line.split()[1] for line in rollup if line.startswith("Pss:"))
    return {
        "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "pss_mib": int(pss) / 1024,
    }


class ProcessTree:
    """A process started in its own process group, and its children: CPU time, memory, stop."""

    process = None

    def pool_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def cpu_seconds(self):
        """User and system CPU time of the main process and its children so far (a child gone meanwhile: 0)."""
        return sum(process_cpu_seconds(pid) for pid in (self.process.pid, *self.pool_pids()))

    def memory(self):
        """The main process and each child, as :func:`memory` reports them."""
        return {"main": memory(self.process.pid), "pool": [memory(pid) for pid in self.pool_pids()]}

    def signal_group(self, signum):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, timeout=20):
        """Warm shutdown, then SIGKILL whatever of the process group is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.signal_group(signal.SIGKILL)
        self.process.wait(10)


class Worker(ProcessTree):
    """A Celery worker process (and its prefork pool), in its own process group, logging to a file."""

    def __init__(self, name, entry, queue, log_path, env, cwd):
        self.name = name
        self.queue = queue
        self.log_path = log_path
        self.command = [
            *entry,
            "worker",
            "-Q",
            queue,
            "-n",
            name,
            "-c",
            "2",
            "-P",
            "prefork",
            "-l",
            "warning",
            "--without-mingle",
            "--without-gossip",
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.cwd = cwd
        self.process = None

    def start(self, app, timeout=120):
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
            )

        def answered():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}, see {self.log_path}")
            return app.control.ping(destination=[self.name], timeout=0.5)

        wait_for(answered, timeout, interval=0.2, what=f"worker {self.name} to answer ping")
        return self


def purge_queues(app, names):
    """Drop the messages left in the benchmark's queues, keeping the queues.

    Kept, not deleted, when this process publishes to them again: kombu remembers the queues its
    connection declared, so on RabbitMQ a message for a queue deleted meanwhile is unroutable.
    """
    with app.connection_for_write() as conn:
        for name in names:
            channel = conn.channel()
            try:
                Queue(name, channel=channel).purge()
            except conn.channel_errors:
                pass  # a queue that does not exist is a channel error on RabbitMQ
            finally:
                with contextlib.suppress(*conn.channel_errors, *conn.connection_errors):
                    channel.close()


def delete_queues(app, names):
    """Drop the benchmark's queues and any message left in them from the broker.

    Purged first: on Redis, kombu's delete only drops the bindings its own connection declared,
    and leaves the messages.
    """
    purge_queues(app, names)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            Queue(name, channel=channel).delete()
            Exchange(name, channel=channel).delete()


def message_count(app, name):
    """Ready messages in queue ``name`` on ``app``'s broker (0 for a queue that does not exist)."""
    with app.connection_for_read() as conn:
        channel = conn.channel()
        try:
            return channel.queue_declare(queue=name, passive=True).message_count
        except conn.channel_errors:
            return 0
        finally:
            channel.close()


def flush_redis_databases():
    """Empty the Redis databases the benchmark owns (never the test suite's)."""
    import redis

    for number in REDIS_DBS.values():
        redis.Redis.from_url(f"{REDIS}/{number}").flushdb()

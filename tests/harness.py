"""Real parts for the tests: an Odoo database, a Celery worker process, the caller's Odoo."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_ADDON = REPO / "tests" / "addons" / "celery_task_test"
REDIS_URL = os.environ.get("CELERY_TASK_TEST_REDIS", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("CELERY_TASK_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
BROKERS = {"redis": f"{REDIS_URL}/14", "rabbitmq": AMQP_URL}
RESULT_BACKEND = f"{REDIS_URL}/15"


def find_odoo():
    """Import Odoo from the environment, or from ODOO_PATH; the reason why not otherwise."""
    odoo_path = os.environ.get("ODOO_PATH")
    if odoo_path and odoo_path not in sys.path:
        sys.path.insert(0, odoo_path)
    try:
        import odoo
        import odoo.release
    except ImportError as exc:
        return None, f"Odoo is not importable ({exc}); install Odoo 18.0 into this Python or set ODOO_PATH"
    if odoo.release.version_info[0] != 18:
        return None, f"Odoo {odoo.release.version} found, these tests need 18.0"
    return odoo, None


def port_open(host, port):
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def wait_for(predicate, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class OdooHome:
    """A folder with an addons path holding this checkout as ``celery_task`` and the test addon."""

    def __init__(self, odoo):
        self.root = Path(tempfile.mkdtemp(prefix="celery_task_test_"))
        addons = self.root / "addons"
        addons.mkdir()
        (addons / "celery_task").symlink_to(REPO)
        (addons / "celery_task_test").symlink_to(TEST_ADDON)
        odoo_root = Path(odoo.__file__).resolve().parent
        paths = [odoo_root / "addons", odoo_root.parent / "addons", addons]
        self.addons_path = ",".join(str(path) for path in paths if path.is_dir())
        self.odoo_bin = odoo_root.parent / "odoo-bin"

    def entry_command(self, entry):
        """How an operator starts Celery through ``entry``: a script of the addon, or ``odoo-bin celery``.

        An Odoo installed without its source tree has no ``odoo-bin``; ``python -m odoo`` is the same CLI.
        """
        if entry != "odoo-bin celery":
            return [sys.executable, str(REPO / entry)]
        odoo_cli = [str(self.odoo_bin)] if self.odoo_bin.exists() else ["-m", "odoo"]
        return [sys.executable, *odoo_cli, f"--addons-path={self.addons_path}", "celery"]

    def write_config(self, name, databases, **options):
        lines = [
            "[options]",
            f"addons_path = {self.addons_path}",
            f"db_name = {','.join(databases)}",
            "without_demo = all",
            "log_level = info",
        ]
        lines += [f"{key} = {value}" for key, value in options.items()]
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(config_path, dbname, modules, log_path):
    """Install ``modules`` into a new database with Odoo's own command line."""
    subprocess.run(["dropdb", "--if-exists", dbname], check=True, capture_output=True)
    with open(log_path, "w") as log:
        subprocess.run(
            [sys.executable, "-m", "odoo", "-c", str(config_path), "-d", dbname, "-i", modules, "--stop-after-init"],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),
        )


def copy_database(template, dbname):
    subprocess.run(["dropdb", "--if-exists", dbname], check=True, capture_output=True)
    subprocess.run(["createdb", "-T", template, dbname], check=True, capture_output=True)


def drop_database(dbname):
    subprocess.run(["dropdb", "--if-exists", "--force", dbname], capture_output=True)


class Worker:
    """A real ``python odoo_celery.py worker`` process, with its log in a file."""

    def __init__(self, config_path, name, queue, log_path, env=None, concurrency=2, entry=None, extra=()):
        self.name = name
        self.queue = queue
        self.log_path = Path(log_path)
        self.config_path = config_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.concurrency = concurrency
        self.entry = entry or [sys.executable, str(REPO / "odoo_celery.py"), "-c", str(config_path)]
        self.extra = list(extra)
        self.process = None

    def command(self):
        return [
            *self.entry,
            "worker",
            "-Q",
            self.queue,
            "-n",
            self.name,
            "-c",
            str(self.concurrency),
            "-P",
            "prefork",
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
            *self.extra,
        ]

    def start(self, app=None, timeout=60):
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it for its whole life
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=tempfile.gettempdir(),
            start_new_session=True,
        )
        log.close()
        if app is not None:
            self.wait_ready(app, timeout)
        return self

    def wait_ready(self, app, timeout=60):
        def answered():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            return app.control.ping(destination=[self.name], timeout=0.5)

        wait_for(answered, timeout, interval=0.2, what=f"worker {self.name} to answer ping")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines=60):
        return "\n".join(self.log().splitlines()[-lines:])

    def child_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self):
        """SIGKILL the whole worker: main process and pool children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout=20):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a loopback port, to stop and start as a broker outage."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = Path(workdir)
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "yes"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, what=f"redis on port {self.port}")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        wait_for(lambda: not port_open("127.0.0.1", self.port), 10, what=f"redis on port {self.port} to stop")


class RabbitMQApp:
    """Stops and starts the RabbitMQ application (the node stays up), as a broker outage."""

    @staticmethod
    def stop():
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        wait_for(lambda: not port_open("127.0.0.1", 5672), 30, what="RabbitMQ to stop listening")

    @staticmethod
    def start():
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        wait_for(lambda: port_open("127.0.0.1", 5672), 60, what="RabbitMQ to listen again")

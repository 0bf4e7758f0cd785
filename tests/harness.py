"""Real parts for the tests: an Odoo database, a Celery worker process, the caller's Odoo."""

import ast
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_ADDONS = REPO / "tests" / "addons"
#: What the tests' databases install: the test addon, and the addon converted from queue_job (docs/from-queue-job.md).
TEST_MODULES = "celery_task_test,celery_task_from_queue_job"
REDIS_URL = os.environ.get("CELERY_TASK_TEST_REDIS", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("CELERY_TASK_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
BROKERS = {"redis": f"{REDIS_URL}/14", "rabbitmq": AMQP_URL}
RESULT_BACKEND = f"{REDIS_URL}/15"
TEMPLATE_PREFIX = "ct_tpl_"
_held_templates = set()


def supported_series():
    """``compat.SERIES``, read without importing the addon (it needs Odoo's addons path first)."""
    tree = ast.parse((REPO / "compat.py").read_text())
    assignment = next(node for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "SERIES")
    return ast.literal_eval(assignment.value)


def find_odoo():
    """Import Odoo from the environment, or from ODOO_PATH; the reason why not otherwise."""
    odoo_path = os.environ.get("ODOO_PATH")
    if odoo_path and odoo_path not in sys.path:
        sys.path.insert(0, odoo_path)
    series = ", ".join(f"{major}.0" for major in supported_series())
    try:
        import odoo.release
        import odoo.tools
    except ImportError as exc:
        return None, f"Odoo is not importable ({exc}); install Odoo ({series}) into this Python or set ODOO_PATH"
    if odoo.release.version_info[0] not in supported_series():
        return None, f"Odoo {odoo.release.version} found, these tests support {series}"
    return odoo, None


def odoo_source_root(odoo):
    """The folder of ``odoo-bin`` and of the ``odoo`` package (19.0's ``odoo`` has no ``__file__``)."""
    return Path(odoo.release.__file__).resolve().parent.parent


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
    """A folder with an addons path holding this checkout as ``celery_task`` and the tests' addons."""

    def __init__(self, odoo):
        self.root = Path(tempfile.mkdtemp(prefix="celery_task_test_"))
        addons = self.root / "addons"
        addons.mkdir()
        (addons / "celery_task").symlink_to(REPO)
        for addon in TEST_ADDONS.iterdir():
            (addons / addon.name).symlink_to(addon)
        source_root = odoo_source_root(odoo)
        paths = [source_root / "odoo" / "addons", source_root / "addons", addons]
        self.addons_path = ",".join(str(path) for path in paths if path.is_dir())
        self.odoo_bin = source_root / "odoo-bin"

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
    """A new database with ``modules`` installed by Odoo's own command line; returns its template.

    The install is a template named after everything it reads (the addon's files, the test
    addon's, the Odoo series and tree): the next run with the same sources copies it in a second,
    parallel sessions (``pytest -n``) install once and copy it, and tests copy it for databases of
    their own. ``CI`` or ``CELERY_TASK_TEST_FRESH_DB`` set: installs anew, once per run.
    """
    import odoo.release
    import odoo.tools

    digest = hashlib.sha256(f"{odoo.release.version}|{Path(odoo.release.__file__).parent}|{modules}".encode())
    for path in sorted(_installed_files()):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    series = f"{TEMPLATE_PREFIX}{odoo.release.version_info[0]}_"
    template = f"{series}{digest.hexdigest()[:16]}"
    if os.environ.get("CI") or os.environ.get("CELERY_TASK_TEST_FRESH_DB"):
        template += "_" + (os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid()))[:12]
    with _template_lock(template):
        if not _database_exists(template):
            for stale in _databases_like(f"{series}%"):
                if subprocess.run(["dropdb", "--if-exists", stale], capture_output=True).returncode == 0:
                    shutil.rmtree(odoo.tools.config.filestore(stale), ignore_errors=True)  # not one in use
            _install(config_path, template, modules, log_path)
    copy_database(template, dbname)
    return template


@contextlib.contextmanager
def _template_lock(template):
    """Across the processes of this machine (flock on a file named after the template); re-entrant in one."""
    if template in _held_templates:
        yield
        return
    with open(Path(tempfile.gettempdir()) / f"{template}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held_templates.add(template)
        try:
            yield
        finally:
            _held_templates.discard(template)


def _install(config_path, dbname, modules, log_path):
    drop_database(dbname)
    with open(log_path, "w") as log:
        subprocess.run(
            [sys.executable, "-m", "odoo", "-c", str(config_path), "-d", dbname, "-i", modules, "--stop-after-init"],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),
        )


def _installed_files():
    """The files an install of the addon and the test addon reads: not the suite, the bench or caches."""
    skipped = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", "bench"}
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if not path.is_file() or skipped.intersection(parts):
            continue
        if parts[0] == "tests" and parts[:2] != ("tests", "addons"):
            continue
        yield path


def _databases_like(pattern):
    out = subprocess.run(
        ["psql", "-d", "postgres", "-Atc", f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def _database_exists(dbname):
    return dbname in _databases_like(dbname)


def copy_database(template, dbname):
    """``dbname`` as a copy of ``template``, with its filestore.

    One copy of a template at a time (``createdb -T`` refuses a template another copy reads):
    parallel sessions take turns on its lock.
    """
    from odoo.tools import config

    drop_database(dbname)
    with _template_lock(template):
        subprocess.run(["createdb", "-T", template, dbname], check=True, capture_output=True)
    filestore = config.filestore(template)
    if os.path.isdir(filestore):
        shutil.rmtree(config.filestore(dbname), ignore_errors=True)
        shutil.copytree(filestore, config.filestore(dbname))


def drop_database(dbname):
    from odoo.tools import config

    subprocess.run(["dropdb", "--if-exists", "--force", dbname], capture_output=True)
    shutil.rmtree(config.filestore(dbname), ignore_errors=True)


def task_count(env):
    """The task records in ``env``'s database, as its transaction sees them."""
    env.cr.execute("SELECT count(*) FROM celery_task")
    return env.cr.fetchone()[0]


def run_caller_script(stack, script, item_id, env):
    """Run ``tests/<script>`` with the tests' config, database and test item ``item_id``, as a caller of its own."""
    return subprocess.run(
        [sys.executable, str(REPO / "tests" / script), str(stack.config_path), stack.db, str(item_id)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tempfile.gettempdir(),
    )


def rpc(dbname, uid, password, model, method, *args, **kwargs):
    """An XML-RPC/JSON-RPC ``execute_kw`` call, dispatched the way Odoo's RPC controllers do."""
    from odoo.service import model as rpc_model

    return rpc_model.dispatch("execute_kw", [dbname, uid, password, model, method, list(args), kwargs])


def run_odoo_tests(stack, dbname, module, tags, log_path):
    """Odoo's own test runner on ``dbname`` for ``module``'s tests matching ``tags``; its output in ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.run(
            [
                *stack.odoo_command(),
                "-d",
                dbname,
                # Updating the addon limits the tests Odoo imports to its own: 19.0 imports those of
                # every loaded module otherwise, and the test-sized trees lack some of them.
                "-u",
                module,
                "--test-enable",
                "--test-tags",
                tags,
                "--stop-after-init",
                f"--http-port={free_port()}",
                "--log-level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=stack.home.root,
            timeout=300,
        )


class Worker:
    """A real ``python odoo_celery.py worker`` process, with its log in a file."""

    def __init__(self, config_path, name, queue, log_path, env=None, concurrency=2, entry=None, extra=()):
        self.name = name
        self.queue = queue
        self.log_path = Path(log_path)
        self.config_path = config_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.concurrency = concurrency
        self.entry = entry or self.default_entry(config_path)
        self.extra = list(extra)
        self.process = None

    @staticmethod
    def default_entry(config_path):
        return [sys.executable, str(REPO / "odoo_celery.py"), "-c", str(config_path)]

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
        """Ping the worker on its own broker, wherever the caller's app points (a test may have left it on
        a broker it stopped)."""

        def answered():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            return app.control.ping(destination=[self.name], timeout=0.5, connection=connection)

        with app.connection_for_write(self.env.get("ODOO_CELERY_BROKER_URL")) as connection:
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
        if self.process is None or self.process.poll() is not None:
            return
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


class Stack:
    """The caller's Odoo (this process) plus the workers it talks to."""

    def __init__(self, home, config_path, databases, log_dir):
        from odoo.modules.registry import Registry

        from odoo.addons.celery_task import app, serialization
        from odoo.addons.celery_task.publisher import publisher

        self.home = home
        self.config_path = config_path
        self.db, self.other_db = databases
        self.log_dir = log_dir
        self.app = app.celery_app
        self._app = app
        self._publisher = publisher
        self.serialization = serialization
        self.registry = Registry(self.db)
        self.workers = {}
        self.broker = None
        self.run_id = os.getpid()

    def queue(self, broker):
        return f"ct-test-{self.run_id}-{broker}"

    def worker(self, broker, name=None, queue=None, env=None, **kwargs):
        """A worker process (not started) on ``broker``; by default the shared one of that broker."""
        name = name or f"{broker}-{self.run_id}@localhost"
        queue = queue or self.queue(broker)
        return Worker(
            self.config_path,
            name,
            queue,
            self.log_dir / f"worker-{name.split('@')[0]}.log",
            env={"ODOO_CELERY_BROKER_URL": BROKERS[broker], "ODOO_CELERY_DEFAULT_QUEUE": queue, **(env or {})},
            **kwargs,
        )

    def odoo_command(self, config_path=None):
        """Odoo's own command line, with the config of the tests (or ``config_path``)."""
        return [sys.executable, "-m", "odoo", "-c", str(config_path or self.config_path)]

    def reconfigure(self, **settings):
        """Apply ``settings`` to the caller's app, once what was committed for the old ones is published."""
        self._publisher.wait_idle(timeout=10)
        self._app.reconfigure(**settings)

    def point_caller(self, broker_url, queue):
        """Send the caller's next messages to ``queue`` on ``broker_url``."""
        self.reconfigure(broker_url=broker_url, task_default_queue=queue)
        self.broker = None

    def use(self, broker):
        """Point the caller at ``broker`` and make sure a worker consumes its queue."""
        if self.broker != broker:
            self.reconfigure(broker_url=BROKERS[broker], task_default_queue=self.queue(broker))
            self.broker = broker
        worker = self.workers.get(broker)
        if worker is None or worker.process.poll() is not None:
            worker = self.workers[broker] = self.worker(broker).start(self.app)
        return worker

    @contextlib.contextmanager
    def env(self, uid=None, context=None, dbname=None):
        """An environment on a fresh cursor that commits on a clean exit, like a request."""
        from odoo import api
        from odoo.modules.registry import Registry

        registry = Registry(dbname) if dbname else self.registry
        with registry.cursor() as cr:
            yield api.Environment(cr, uid or api.SUPERUSER_ID, context or {})

    def retried(self, work, uid=None, attempts=5):
        """``work(env)`` in a transaction of its own, run again on a concurrency conflict, as Odoo's RPC does.

        What a user's click goes through: the worker's main process may update a task row (its
        notice sent) between this transaction's snapshot and its write.
        """
        from psycopg2 import errors

        for attempt in range(attempts):
            try:
                with self.env(uid=uid) as env:
                    return work(env)
            except (errors.SerializationFailure, errors.DeadlockDetected):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
        return None

    def task_row(self, task_uuid, dbname=None):
        with self.env(dbname=dbname) as env:
            env.cr.execute("SELECT * FROM celery_task WHERE uuid = %s", [task_uuid])
            return env.cr.dictfetchone()

    def wait_row(self, task_uuid, states=("done", "failed", "cancelled"), timeout=30, dbname=None):
        def reached():
            row = self.task_row(task_uuid, dbname)
            return row if row and row["state"] in states else None

        return wait_for(reached, timeout, what=f"task {task_uuid} to reach {states}")

    def wait_told(self, task_uuids, timeout=30):
        """Wait until the outcomes of ``task_uuids`` are told: from then on the relay writes their rows no more."""

        def told():
            rows = [self.task_row(task_uuid) for task_uuid in task_uuids]
            return all(row["state"] in ("done", "failed") and not row["notice_pending"] for row in rows)

        wait_for(told, timeout, what="the outcomes to be told")

    def call(self, method, item_id, *args, uid=None, context=None, **kwargs):
        """Call decorated ``method`` on test item ``item_id`` in its own committed transaction, as ``uid``."""
        with self.env(uid=uid, context=context) as env:
            return getattr(env["task.test.item"].browse(item_id), method)(*args, **kwargs)

    def unpublished_call(self, method, item_id, *args, **kwargs):
        """A call committed with nothing published, as if its caller died right after the commit: its row."""
        with self.env() as env:
            result = getattr(env["task.test.item"].browse(item_id), method)(*args, **kwargs)
            env.cr.postcommit.clear()
        return self.task_row(result.id)

    def set_task_columns(self, record_id, **columns):
        """Write ``columns`` of a task record directly, as a foreign writer (or time passing) would."""
        with self.env() as env:
            for column, value in columns.items():
                env.cr.execute(f"UPDATE celery_task SET {column} = %s WHERE id = %s", [value, record_id])

    def task_id(self, result):
        """The task record id of a call's AsyncResult."""
        return self.task_row(result.id)["id"]

    def new_user(self, name, *group_xmlids, password=None):
        """A new user named ``name`` in ``group_xmlids``, with a login of its own; returns its id."""
        from odoo.addons.celery_task.compat import USER_GROUPS_FIELD

        with self.env() as env:
            groups = [env.ref(xmlid).id for xmlid in group_xmlids]
            values = {"name": name, "login": f"{name.lower().replace(' ', '-')}-{os.urandom(4).hex()}"}
            if password:
                values["password"] = password
            users = env["res.users"].with_context(no_reset_password=True)
            return users.create({**values, USER_GROUPS_FIELD: [(6, 0, groups)]}).id

    def new_item(self, **values):
        with self.env() as env:
            return env["task.test.item"].create({"name": "item", **values}).id

    def item(self, item_id, dbname=None):
        with self.env(dbname=dbname) as env:
            return env["task.test.item"].browse(item_id).read(["value", "note", "runs"])[0]

    def stop(self):
        for worker in self.workers.values():
            worker.stop()


class Beat(Worker):
    """A real ``celery beat`` process on the database scheduler, looking at the database every second."""

    def command(self):
        return [*self.entry, "beat", "-l", "info", "--max-interval", "1"]

    def wait_started(self, timeout=60):
        """Until beat printed its banner, right before its scheduler starts ticking."""

        def started():
            if self.process.poll() is not None:
                raise RuntimeError(f"beat exited with {self.process.returncode}:\n{self.log_tail()}")
            return "maxinterval ->" in self.log()

        wait_for(started, timeout, interval=0.2, what="beat to start")


def redis_queue(client, queue):
    """The messages waiting in ``queue`` on Redis, decoded: kombu keeps each priority step in a list of its own."""
    from kombu.transport.redis import PRIORITY_STEPS

    names = [queue] + [f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS if step]
    return [json.loads(message) for name in names for message in client.lrange(name, 0, -1)]


def delete_redis_queue(client, queue):
    from kombu.transport.redis import PRIORITY_STEPS

    client.delete(queue, *(f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS if step))


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a loopback port, to stop and start as a broker outage."""

    def __init__(self, workdir, host="127.0.0.1"):
        self.host = host
        self.port = free_port()
        self.workdir = Path(workdir)
        self.process = None

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly", "yes"]
            + ([] if self.host == "127.0.0.1" else ["--protected-mode", "no"]),
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.host, self.port), 10, what=f"redis on port {self.port}")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        wait_for(lambda: not port_open(self.host, self.port), 10, what=f"redis on port {self.port} to stop")


class BrokerOutage:
    """A real broker behind a TCP proxy of the test's own: stop() is an outage for whoever connects
    through it (refused connections, dropped sessions), start() its end. The broker itself, and
    everyone else's connections to it, are untouched."""

    def __init__(self, url, host="127.0.0.1"):
        parsed = urllib.parse.urlsplit(url)
        self.target = (parsed.hostname, parsed.port)
        self.host = host
        self.port = free_port()
        self.url = urllib.parse.urlunsplit(
            parsed._replace(netloc=parsed.netloc.replace(f"{parsed.hostname}:{parsed.port}", f"{host}:{self.port}"))
        )
        self.listener = None
        self.connections = []
        self.lock = threading.Lock()

    def start(self):
        self.listener = socket.create_server((self.host, self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def stop(self):
        listener, self.listener = self.listener, None
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # close() alone leaves a blocked accept() taking connections
        listener.close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

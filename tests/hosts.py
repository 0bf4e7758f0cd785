"""Several worker hosts on one machine: network namespaces linked to a bridge, a PostgreSQL cluster and
brokers that the hosts reach over that network, and cuts that drop a host's packets silently.

A host here is a network namespace with a veth link to a bridge in the machine's own namespace.
The bridge's address serves what the hosts share: a PostgreSQL cluster of the tests' own (its own
data directory and port, the machine's binaries), a Redis of its own, and RabbitMQ through a proxy
(the machine's RabbitMQ listens on loopback only; AMQP heartbeats are end to end, so a dead host is
found through them as it would be directly). The cluster is real, not behind a proxy: its own
keepalives and socket behaviour decide when it ends a silent host's sessions.

A cut is an nftables table inside the host's namespace that drops its packets to and from the
bridge (some ports, or all): no reset reaches either side, as when a link fails or a host loses
power. A host that dies while cut off is killed with its link still cut. Needs root, iproute2 and
nftables (Debian's ``nftables``).
"""

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

SUBNET = "10.77"


def run(*command, namespace=None, check=True, **kwargs):
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return subprocess.run([*prefix, *command], check=check, capture_output=True, text=True, **kwargs)


def missing_tools():
    """What this machine lacks to build hosts, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: iproute2, nftables, util-linux)"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "PostgreSQL's server binaries are not in /usr/lib/postgresql/*/bin"
    return None


class Network:
    """A bridge at ``<SUBNET>.<n>.1`` and hosts at ``.2``, ``.3``... each in a namespace of its own."""

    def __init__(self, tag, hosts=("a", "b")):
        self.tag = tag
        number = 20 + tag % 200
        self.bridge = f"ctb{tag}"
        self.address = f"{SUBNET}.{number}.1"
        self.hosts = {name: (f"ct{tag}{name}", f"{SUBNET}.{number}.{index}") for index, name in enumerate(hosts, 2)}

    def up(self):
        self.down()
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.address}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for namespace, address in self.hosts.values():
            outside, inside = f"{namespace}o", f"{namespace}i"
            run("ip", "netns", "add", namespace)
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            run("ip", "link", "set", inside, "netns", namespace)
            run("ip", "link", "set", outside, "master", self.bridge, "up")
            run("ip", "addr", "add", f"{address}/24", "dev", inside, namespace=namespace)
            run("ip", "link", "set", inside, "up", namespace=namespace)
            run("ip", "link", "set", "lo", "up", namespace=namespace)
        return self

    def namespace(self, host):
        return self.hosts[host][0]

    def cut(self, host, ports=None):
        """Drop ``host``'s packets to and from the bridge's ``ports`` (None: every port), both ways, silently."""
        self.heal(host)
        match_out = f"ip daddr {self.address}" + (f" tcp dport {{ {', '.join(map(str, ports))} }}" if ports else "")
        match_in = f"ip saddr {self.address}" + (f" tcp sport {{ {', '.join(map(str, ports))} }}" if ports else "")
        rules = (
            "table inet ct_cut {\n"
            f"  chain out {{ type filter hook output priority 0; policy accept; {match_out} drop; }}\n"
            f"  chain in {{ type filter hook input priority 0; policy accept; {match_in} drop; }}\n"
            "}\n"
        )
        run("nft", "-f", "-", namespace=self.namespace(host), input=rules)

    def heal(self, host):
        run("nft", "delete", "table", "inet", "ct_cut", namespace=self.namespace(host), check=False)

    def down(self):
        for namespace, _ in self.hosts.values():
            for pid in run("ip", "netns", "pids", namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            run("ip", "netns", "del", namespace, check=False)
            run("ip", "link", "del", f"{namespace}o", check=False)
        run("ip", "link", "del", self.bridge, check=False)


class Cluster:
    """A PostgreSQL cluster of the tests' own on ``address``:``port`` (and a socket directory), trusting the bridge."""

    def __init__(self, address, port, settings=""):
        self.address, self.port, self.settings = address, port, settings
        self.bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="ct_hosts_pg_"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"

    def _as_postgres(self, *command, **kwargs):
        return run("runuser", "-u", "postgres", "--", *command, **kwargs)

    def start(self):
        self.sockets.mkdir()
        shutil.chown(self.root, "postgres")
        shutil.chown(self.sockets, "postgres")
        self._as_postgres(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "root", "--auth=trust", "-E", "UTF8", "--locale=C"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{self.address}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\nmax_connections = 200\n"
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\nshared_buffers = 64MB\n"
                f"{self.settings}\n"
            )
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.address}/16 trust\n")
        self._as_postgres(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start"
        )
        return self

    def psql_args(self):
        return ["-h", str(self.sockets), "-p", str(self.port)]

    def copy_database(self, source, dbname):
        """``source`` of the machine's cluster (the tests' installed template), restored here as ``dbname``."""
        run("createdb", *self.psql_args(), "-T", "template0", "-E", "UTF8", dbname)
        dump = subprocess.Popen(["pg_dump", "-Fc", source], stdout=subprocess.PIPE)
        subprocess.run(["pg_restore", *self.psql_args(), "-d", dbname, "--no-owner"], stdin=dump.stdout, check=True)
        dump.stdout.close()
        if dump.wait():
            raise RuntimeError(f"pg_dump of {source} failed")

    def connect(self, dbname):
        import psycopg2

        connection = psycopg2.connect(host=str(self.sockets), port=self.port, dbname=dbname, user="root")
        connection.autocommit = True
        return connection

    def stop(self):
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class Hosts:
    """What the multi-host tests share: the network, the cluster with a database, the brokers on the bridge."""

    def __init__(self, stack):
        self.stack = stack
        self.network = Network(stack.run_id).up()
        self.cluster = Cluster(self.network.address, harness.free_port()).start()
        self.dbname = f"ct_hosts_{stack.run_id}"
        self.cluster.copy_database(stack.template, self.dbname)
        self.redis = harness.PrivateRedis(stack.log_dir, host=self.network.address).start()
        self.rabbitmq = harness.BrokerOutage(harness.BROKERS["rabbitmq"], host=self.network.address).start()
        self.brokers = {"redis": self.redis.url, "rabbitmq": self.rabbitmq.url}

    def config(self, name, **options):
        """An odoo.conf for the hosts: the cluster over the bridge, this test's database only."""
        return self.stack.home.write_config(
            name,
            [self.dbname],
            db_host=self.network.address,
            db_port=str(self.cluster.port),
            enable_celery_task="True",
            **options,
        )

    def worker(self, host, broker, queue, config_path, **kwargs):
        """A worker on ``host`` (its namespace), not started."""
        return harness.Worker(
            config_path,
            f"{host}-{self.stack.run_id}@{host}",
            queue,
            self.stack.log_dir / f"host-{host}-{broker}-{queue}.log",
            env={"ODOO_CELERY_BROKER_URL": self.brokers[broker], "ODOO_CELERY_DEFAULT_QUEUE": queue},
            entry=["ip", "netns", "exec", self.network.namespace(host), *harness.Worker.default_entry(config_path)],
            **kwargs,
        )

    def call(self, config_path, broker, queue, count, method, *args):
        """Commit ``count`` calls of ``method(*args)``, one per new test item, from a caller process: the item ids."""
        out = subprocess.run(
            [
                sys.executable,
                str(harness.REPO / "tests" / "hosts_caller.py"),
                str(config_path),
                self.dbname,
                str(count),
                method,
                *map(str, args),
            ],
            env={**os.environ, "ODOO_CELERY_BROKER_URL": self.brokers[broker], "ODOO_CELERY_DEFAULT_QUEUE": queue},
            capture_output=True,
            text=True,
            check=True,
            cwd=tempfile.gettempdir(),
            timeout=300,
        )
        return [int(item_id) for item_id in out.stdout.split()[-1].split(",")]

    def rows(self, query, *params):
        with contextlib.closing(self.cluster.connect(self.dbname)) as connection, connection.cursor() as cr:
            cr.execute(query, params)
            return cr.fetchall()

    def stop(self):
        self.rabbitmq.stop()
        self.redis.stop()
        self.cluster.stop()
        self.network.down()


def wait(predicate, timeout, what, interval=0.2):
    """``harness.wait_for``, with the time it took."""
    started = time.monotonic()
    value = harness.wait_for(predicate, timeout, interval=interval, what=what)
    return value, time.monotonic() - started

"""Two worker hosts on one network (tests/hosts.py): partitions that heal, a host that dies cut off, a
PostgreSQL cut during a drain; on both brokers. Nothing is lost, nothing runs twice, and no main
process freezes.
"""

import time

import pytest

import hosts as hosts_module

pytestmark = [pytest.mark.odoo, pytest.mark.hosts]

CUT_SECONDS = 14  # a PostgreSQL cut during a drain: longer than FAST's celery_host_timeout

FAST = {  # partitions: sessions a server ends after 8 s of silence, a relay every second
    "celery_host_timeout": "8",
    "celery_relay_interval": "1",
    "celery_relay_delay": "3",
    "celery_relay_resend_after": "10",
}


@pytest.fixture(scope="module")
def hosts(stack):
    missing = hosts_module.missing_tools()
    if missing:
        pytest.skip(f"HOST TESTS SKIPPED: {missing}")
    made = hosts_module.Hosts(stack)
    yield made
    made.stop()


@pytest.fixture
def pair(hosts, request):
    """Start hosts a and b with a worker each (2 pool processes) on one queue: ``start(broker, config)``."""
    made = []

    def start(broker, config_path):
        queue = f"ct-hosts-{hosts.stack.run_id}-{request.node.name.replace('[', '-').strip(']')}"
        workers = [hosts.worker(host, broker, queue, config_path) for host in ("a", "b")]
        made.extend(workers)
        app = control_app(hosts.brokers[broker])
        for worker in workers:
            worker.start(app, timeout=90)
        return app, queue, workers

    yield start
    for worker in made:
        worker.kill()
    for host in ("a", "b"):
        hosts.network.heal(host)


def control_app(broker_url):
    from celery import Celery

    return Celery("ct-hosts", broker=broker_url, set_as_current=False)


def outcome(hosts, item_ids):
    """``{runs: how many items ran that often}``: 0 is lost, 2 and more ran twice."""
    return dict(hosts.rows("SELECT runs, count(*) FROM task_test_item WHERE id = ANY(%s) GROUP BY runs", item_ids))


def wait_drained(hosts, item_ids, timeout):
    def drained():
        return (
            hosts.rows(
                "SELECT count(*) FROM celery_task WHERE record_ids::jsonb ->> 0 = ANY(%s) AND state <> 'done'",
                [str(item_id) for item_id in item_ids],
            )[0][0]
            == 0
            and outcome(hosts, item_ids).get(0) is None
        )

    return hosts_module.wait(drained, timeout, what=f"the {len(item_ids)} tasks to be done")[1]


def done_count(hosts, item_ids):
    return hosts.rows("SELECT count(*) FROM task_test_item WHERE id = ANY(%s) AND runs > 0", list(item_ids))[0][0]


def ping_while(app, worker, seconds):
    """Ping ``worker`` every half second for ``seconds``: the longest reply, and how many went unanswered."""
    longest, missed, deadline = 0.0, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = time.monotonic()
        answered = app.control.ping(destination=[worker.name], timeout=2.0)
        if answered:
            longest = max(longest, time.monotonic() - sent)
        else:
            missed += 1
        time.sleep(max(0.0, 0.5 - (time.monotonic() - sent)))
    return longest, missed


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_partitions_that_heal_lose_nothing_and_run_nothing_twice(hosts, pair, broker, record_property):
    config_path = hosts.config(f"heal-{broker}.conf", **FAST)
    app, queue, (host_a, _) = pair(broker, config_path)
    item_ids = hosts.call(config_path, broker, queue, 500, "slow_bump", 0.1)
    hosts_module.wait(lambda: done_count(hosts, item_ids) >= 40, 60, what="the drain to start")
    broker_port = (hosts.redis if broker == "redis" else hosts.rabbitmq).port
    figures = []
    for label, ports in (("PostgreSQL", [hosts.cluster.port]), ("the broker", [broker_port]), ("both", None)):
        before = done_count(hosts, item_ids)
        hosts.network.cut("a", ports)
        if label == "PostgreSQL":
            longest, missed = ping_while(app, host_a, 5)
            assert missed == 0, f"host a's main process stopped answering while cut from PostgreSQL ({missed} missed)"
            figures.append(f"cut from PostgreSQL: longest ping {longest * 1000:.0f} ms")
        else:
            time.sleep(5)
        hosts.network.heal("a")
        hosts_module.wait(
            lambda before=before: done_count(hosts, item_ids) > before + 10,
            60,
            what=f"the drain after a cut from {label}",
        )
    wait_drained(hosts, item_ids, 180)
    assert outcome(hosts, item_ids) == {1: len(item_ids)}, "each task ran exactly once"
    record_property("partitions", "; ".join(figures))
    print(f"{broker}: " + "; ".join(figures))


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_postgresql_cut_during_a_drain_freezes_no_main_process(hosts, pair, broker, record_property):
    config_path = hosts.config(f"pgcut-{broker}.conf", **FAST)
    app, queue, (_, host_b) = pair(broker, config_path)
    item_ids = hosts.call(config_path, broker, queue, 800, "slow_bump", 0.1)
    hosts_module.wait(lambda: done_count(hosts, item_ids) >= 40, 60, what="the drain to start")
    hosts.network.cut("b", [hosts.cluster.port])
    longest, missed = ping_while(app, host_b, CUT_SECONDS)  # longer than celery_host_timeout: sessions end
    hosts.network.heal("b")
    healed_at = hosts.rows("SELECT now() AT TIME ZONE 'UTC'")[0][0]
    assert missed == 0, f"host b's main process stopped answering while cut from PostgreSQL ({missed} missed)"
    wait_drained(hosts, item_ids, 180)
    assert outcome(hosts, item_ids) == {1: len(item_ids)}, "each task ran exactly once"
    after_heal = hosts.rows(
        "SELECT count(*) FROM celery_task WHERE worker_host = %s AND started_at > %s", host_b.name, healed_at
    )[0][0]
    assert after_heal > 0, "host b took tasks again once the link healed"
    if broker == "rabbitmq":
        assert "Connection to broker lost" not in host_b.log(), "its heartbeats went on: the broker kept its connection"
    figures = f"{CUT_SECONDS} s cut: longest ping {longest * 1000:.0f} ms, 0 missed; then host b ran {after_heal} tasks"
    record_property("postgresql_cut", figures)
    print(f"{broker}: {figures}")


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_host_that_dies_cut_off_gives_its_tasks_back_within_a_minute(hosts, pair, broker, record_property):
    config_path = hosts.config(f"loss-{broker}.conf")  # the defaults, as deployed
    _, queue, (host_a, _) = pair(broker, config_path)
    item_ids = hosts.call(config_path, broker, queue, 80, "slow_bump", 0.5)
    limited_ids = hosts.call(config_path, broker, queue, 20, "limited", 0.3)
    everything = item_ids + limited_ids

    def held_by_a():
        return hosts.rows("SELECT id FROM celery_task WHERE state = 'started' AND worker_host = %s", host_a.name)

    hosts_module.wait(lambda: len(held_by_a()) == 2, 60, what="host a to run two tasks")
    hosts.network.cut("a")
    host_a.kill()
    died_at = hosts.rows("SELECT now()")[0][0]
    stranded = [record_id for (record_id,) in held_by_a()]

    def resumed():
        rows = hosts.rows("SELECT started_at AT TIME ZONE 'UTC', state FROM celery_task WHERE id = ANY(%s)", stranded)
        return rows if all(state == "done" for _, state in rows) else None

    rows, _ = hosts_module.wait(resumed, 120, what="host a's tasks to run elsewhere")
    delays = sorted((started_at - died_at).total_seconds() for started_at, _ in rows)
    wait_drained(hosts, everything, 240)
    assert outcome(hosts, everything) == {1: len(everything)}, "each task ran exactly once"
    assert max(delays) <= 60, f"host a's tasks started elsewhere {delays} s after its death"
    last_done = hosts.rows("SELECT max(done_at) AT TIME ZONE 'UTC' FROM celery_task WHERE id = ANY(%s)", stranded)[0][0]
    figures = (
        f"host a's {len(stranded)} tasks started on b {', '.join(f'{delay:.1f}' for delay in delays)} s after its "
        f"death, done {(last_done - died_at).total_seconds():.1f} s after it; all {len(everything)} done once"
    )
    record_property("host_loss", figures)
    print(f"{broker}: {figures}")

"""How close the addon comes to raw Celery: enqueue cost, drain throughput, latency, memory.

    python bench/run.py --out bench/results/latest.json [--quick] [--broker redis|rabbitmq]

Creates its own databases (``ct_bench_*``), Redis databases 10-12, queues ``ct-bench-*`` and
workers, and removes them all when it ends, also on failure. See bench/README.md.
"""

import argparse
import collections
import contextlib
import datetime
import itertools
import json
import os
import platform
import signal
import sys
import time
import warnings
from pathlib import Path

import report
import stack
from profiling import Profiles
from sides import ODOO_TABLE, OdooFloor, Ours, Raw, Rows

PRESETS = {
    "full": {"tasks": 5000, "probes": 200, "runs": 3},
    "quick": {"tasks": 300, "probes": 30, "runs": 1},
}
WARMUP_TASKS = 50
PROBE_INTERVAL = 0.05


def log(message):
    print(message, file=sys.stderr, flush=True)


def maybe(profiles, kind, *args):
    return getattr(profiles, kind)(*args) if profiles else contextlib.nullcontext()


def fill(side, ids, value, profiles=None, label=""):
    """Publish one write per id while no worker reads the queue; wall and CPU ms of this process per call.

    Also the wall time until every message is on the broker: the addon's caller returns before its
    publisher thread has sent them.
    """
    side.reset()
    side.route(side.drain_queue)
    with maybe(profiles, "caller", f"{label}-enqueue"):
        started, cpu = time.perf_counter(), time.process_time()
        for item_id in ids:
            side.touch(item_id, value)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        side.settle()
        published = time.perf_counter() - started
    return {
        "enqueue_ms": wall * 1000 / len(ids),
        "enqueue_cpu_ms": cpu * 1000 / len(ids),
        "enqueue_published_ms": published * 1000 / len(ids),
    }


def consume(side, total, value):
    """Let the worker consume the filled queue: (tasks done at the first sighting, its time, end time, CPU s).

    Timed from the first task seen done, not from ``add_consumer``: the Redis transport only
    notices a new queue when its current blocking pop times out, up to a second later.
    """

    def done(at_least):
        count = side.rows.count_value(value)
        return (time.perf_counter(), count) if count >= at_least else None

    destination = [side.worker.name]
    timeout = max(120, total / 10)
    cpu = side.worker.cpu_seconds()
    side.app.control.add_consumer(side.drain_queue, destination=destination, reply=True)
    first, seen = stack.wait_for(lambda: done(1), timeout, interval=0.02, what=f"{side.name} to start draining")
    try:
        last, _ = stack.wait_for(lambda: done(total), timeout, interval=0.02, what=f"{side.name} to drain {total}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {side.rows.count_value(value)} done; {side.describe()}") from None
    cpu = side.worker.cpu_seconds() - cpu
    side.app.control.cancel_consumer(side.drain_queue, destination=destination, reply=True)
    return seen, first, last, cpu


def drain(side, total, value, profiles=None, label=""):
    """Tasks per second; the worker's CPU ms per task (all its processes, less noisy on a busy machine);
    the whole machine's CPU ms per task and the share of CPU time stolen by the hypervisor meanwhile."""
    busy, stolen = stack.machine_cpu_seconds()
    started = time.perf_counter()
    with maybe(profiles, "worker", side.worker.process.pid, f"{label}-drain"):
        seen, first, last, cpu = consume(side, total, value)
    elapsed = time.perf_counter() - started
    busy_after, stolen_after = stack.machine_cpu_seconds()
    return {
        "drain_tps": (total - seen) / (last - first),
        "drain_cpu_ms": cpu * 1000 / total,
        "drain_machine_cpu_ms": (busy_after - busy) * 1000 / total,
        "drain_steal_pct": (stolen_after - stolen) * 100 / (elapsed * (os.cpu_count() or 1)),
    }


def warm_up(side, ids, value):
    """A few tasks first, so that imports, caches and connections are not part of what is measured."""
    fill(side, ids, value)
    consume(side, len(ids), value)


def percentile(ordered, fraction):
    """Nearest-rank percentile of an already sorted list."""
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def latency_summary(seconds):
    ordered = sorted(value * 1000 for value in seconds)
    return {key: percentile(ordered, int(key[1:]) / 100) for key in report.PERCENTILES}


def measure_latency(side, ids):
    """One call every PROBE_INTERVAL (a light load), each timed from its commit to the method's start."""
    side.rows.clear_started()
    side.route(side.worker.queue)
    sent = []
    due = time.perf_counter()
    for item_id in ids:
        due += PROBE_INTERVAL
        time.sleep(max(0.0, due - time.perf_counter()))
        sent.append(side.stamp(item_id))
    started = stack.wait_for(lambda: side.rows.started(ids), timeout=60, what=f"{side.name} latency probes")
    return {
        "from_commit": latency_summary(begun - committed for (committed, _), begun in zip(sent, started, strict=True)),
        "from_return": latency_summary(begun - returned for (_, returned), begun in zip(sent, started, strict=True)),
    }


def bench_broker(broker, ctx, preset, profiles):
    """All measurements on one broker, with the addon's worker and the raw worker alive throughout."""
    import raw_app

    from odoo.addons.celery_task import app
    from odoo.addons.celery_task.publisher import publisher

    pid = os.getpid()
    names = ("ours", "ours-drain", "floor-drain", "raw", "raw-drain", "sink")
    queues = {name: f"ct-bench-{pid}-{broker}-{name}" for name in names}
    publisher.wait_idle(timeout=10)  # what the last broker's runs committed goes out there first
    app.reconfigure(broker_url=stack.broker_url(broker, "ours"), task_default_queue=queues["ours"])
    raw_app.app.conf.broker_url = stack.broker_url(broker, "raw")
    raw_app.app._pool = None
    raw_app.app.amqp._producer_pool = None
    ours_worker = stack.Worker(
        f"ct-bench-ours-{pid}@localhost",
        [sys.executable, str(stack.REPO / "odoo_celery.py"), "-c", str(ctx["config"])],
        queues["ours"],
        ctx["home"].root / f"worker-ours-{broker}.log",
        {"ODOO_CELERY_BROKER_URL": stack.broker_url(broker, "ours"), "ODOO_CELERY_DEFAULT_QUEUE": queues["ours"]},
        cwd=str(ctx["home"].root),
    )
    raw_worker = stack.Worker(
        f"ct-bench-raw-{pid}@localhost",
        [sys.executable, "-m", "celery", "-A", "raw_app"],
        queues["raw"],
        ctx["home"].root / f"worker-raw-{broker}.log",
        {raw_app.BROKER_ENV: stack.broker_url(broker, "raw"), raw_app.DATABASE_ENV: ctx["raw_db"]},
        cwd=str(stack.BENCH),
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.delete_queues, raw_app.app, [queues[name] for name in ("raw", "raw-drain", "sink")])
        cleanup.callback(stack.delete_queues, app.celery_app, [queues[name] for name in names[:3]])
        cleanup.callback(ours_worker.stop)
        ours_worker.start(app.celery_app)
        cleanup.callback(raw_worker.stop)
        raw_worker.start(raw_app.app)
        ours = Ours(ctx["registry"], ctx["ours_rows"], ours_worker, queues["ours-drain"])
        raw = Raw(raw_app, ctx["raw_rows"], raw_worker, queues["raw-drain"], queues["sink"])
        sides = [ours, OdooFloor(ours, queues["floor-drain"]), raw]
        markers = ctx["markers"]
        ids = {side.name: side.rows.ids(preset["tasks"]) for side in sides}
        for side in sides:
            warm_up(side, ids[side.name][:WARMUP_TASKS], next(markers))
        measured = {side.name: collections.defaultdict(list) for side in sides}
        for number in range(1, preset["runs"] + 1):
            for side in sides:
                log(f"{broker}: run {number}/{preset['runs']}, {side.name}: {preset['tasks']} tasks")
                label = f"{broker}-{side.name}"
                run_profiles = profiles if number == 1 else None
                value = next(markers)
                run = {
                    **fill(side, ids[side.name], value, run_profiles, label),
                    **drain(side, preset["tasks"], value, run_profiles, label),
                }
                for key, result in run.items():
                    measured[side.name][key].append(result)
            for key, result in raw.noop_enqueue(preset["tasks"]).items():
                measured["raw"][key].append(result)
            for key, result in sides[1].write_transactions(ids["floor"], next(markers)).items():
                measured["floor"][key].append(result)
            stack.delete_queues(raw_app.app, [queues["sink"]])
        for number in range(1, preset["runs"] + 1):
            for side in (ours, raw):
                log(f"{broker}: latency run {number}/{preset['runs']}, {side.name}: {preset['probes']} calls")
                measured[side.name]["latency"].append(measure_latency(side, ids[side.name][: preset["probes"]]))
        return {
            "ours": report.summarize(measured["ours"], ours_worker.memory()),
            "floor": report.summarize(measured["floor"]),
            "raw": report.summarize(measured["raw"], raw_worker.memory()),
        }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=stack.BENCH / "results" / "latest.json", help="JSON report")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few tasks, one run")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], action="append", help="default: both")
    parser.add_argument("--tasks", type=int, help="tasks per drain run (and records per side)")
    parser.add_argument("--probes", type=int, help="calls per latency run")
    parser.add_argument("--runs", type=int, help="runs per measurement; the report gives median, min, max")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile the first run of each side into DIR")
    args = parser.parse_args(argv)
    preset = dict(PRESETS["quick" if args.quick else "full"])
    preset.update({key: getattr(args, key) for key in preset if getattr(args, key) is not None})
    preset["probes"] = min(preset["probes"], preset["tasks"])
    return args, preset, args.broker or ["redis", "rabbitmq"]


def main(argv=None):
    args, preset, brokers = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack.check_services(brokers)
    profiles = Profiles(args.profile) if args.profile else None
    import raw_app

    import odoo.tools
    from odoo import sql_db
    from odoo.modules.registry import Registry

    pid = os.getpid()
    odoo_db, raw_db = f"ct_bench_{pid}", f"ct_bench_{pid}_raw"
    home = stack.Home()
    failed = True
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: home.cleanup() if not failed else log(f"logs kept in {home.root}"))
        cleanup.callback(stack.flush_redis_databases)
        config = home.write_config(odoo_db, enable_celery_task="True")
        log(f"creating databases {odoo_db} and {raw_db}")
        cleanup.callback(stack.drop_database, odoo_db)
        stack.create_odoo_database(config, odoo_db, "celery_task_bench", home.root / "install.log")
        cleanup.callback(stack.drop_database, raw_db)
        stack.create_raw_database(raw_db, raw_app.TABLE, preset["tasks"])
        with warnings.catch_warnings():  # parse_config(args) means the same on every series
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            odoo.tools.config.parse_config(["-c", str(config)])
        cleanup.callback(sql_db.close_all)
        ours_rows = opened(cleanup, Rows(odoo_db, ODOO_TABLE))
        ours_rows.query(
            "INSERT INTO {table} (value, create_uid, write_uid, create_date, write_date)"
            " SELECT 0, 1, 1, now(), now() FROM generate_series(1, %s)",
            [preset["tasks"]],
        )
        ctx = {
            "home": home,
            "config": config,
            "raw_db": raw_db,
            "registry": Registry(odoo_db),
            "ours_rows": ours_rows,
            "raw_rows": opened(cleanup, Rows(raw_db, raw_app.TABLE)),
            # Each fill writes a value no other fill wrote: a drain is done when that many rows hold it.
            "markers": itertools.count(1),
        }
        results = {}
        for broker in brokers:
            results[broker] = bench_broker(broker, ctx, preset, profiles)
            results[broker].update(report.verdict(results[broker], broker))
        out = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "settings": {**preset, "warmup_tasks": WARMUP_TASKS, "probe_interval_s": PROBE_INTERVAL},
            "targets": report.TARGETS,
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(report.table(results))
        log(f"written to {args.out}")
        failed = False


def opened(cleanup, rows):
    cleanup.callback(rows.close)
    return rows


if __name__ == "__main__":
    main()

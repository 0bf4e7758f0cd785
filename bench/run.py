"""How close the addon comes to raw Celery, its Odoo floor and OCA queue_job; how its features and its
cost per task hold up at volume.

    python bench/run.py --out bench/results/latest.json [--quick] [--broker redis|rabbitmq] [--part NAME]

Creates its own databases (``ct_bench_*``), Redis databases 10-12, queues ``ct-bench-*``, workers and
a queue_job server, and removes them all when it ends, also on failure. See bench/README.md.
"""

import argparse
import collections
import contextlib
import datetime
import importlib.util
import itertools
import json
import os
import platform
import signal
import sys
import warnings
from pathlib import Path

import against_queue_job
import background_cost
import backlog
import features
import many_databases
import metrics_cost
import queue_job_side
import report
import stack
from measure import PROBE_INTERVAL, drain, fill, log, measure_latency, warm_up
from profiling import Profiles
from sides import ODOO_TABLE, OdooFloor, Ours, Raw, Rows

PARTS = (
    "main",
    "queue_job",
    "memory",
    "backlog",
    "latency_backlog",
    "workflows",
    "unique",
    "exit",
    "databases",
    "background",
    "options",
    "scheduled",
    "metrics",
)
PRESETS = {
    "full": {
        "tasks": 5000,
        "probes": 200,
        "runs": 3,
        "backlogs": [1000, 10000, 50000],
        "finished_rows": 1_000_000,
        "latency_backlog": 10000,
        "chord": 1000,
        "feature_tasks": 2000,
        "databases": [1, 10, 50],
        "background_workers": [1, 4, 16],
        "background_backlog": 50000,
        "relay_backlog": 200000,
        "scheduled": 100000,
        "metrics_backlog": 50000,
    },
    "quick": {
        "tasks": 300,
        "probes": 30,
        "runs": 1,
        "backlogs": [300, 1000],
        "finished_rows": 20000,
        "latency_backlog": 1000,
        "chord": 100,
        "feature_tasks": 200,
        "databases": [1, 3],
        "background_workers": [1, 2],
        "background_backlog": 2000,
        "relay_backlog": 5000,
        "scheduled": 5000,
        "metrics_backlog": 1000,
    },
}
WARMUP_TASKS = 50


def bench_broker(broker, ctx, preset, profiles, parts, first):
    """Every part but the databases on one broker, with the addon's worker (and the raw one) alive throughout."""
    import raw_app

    from odoo.addons.celery_task import app
    from odoo.addons.celery_task.publisher import publisher

    pid = os.getpid()
    names = ("ours", "ours-drain", "floor-drain", "sink", "exit", "raw", "raw-drain", "raw-sink")
    queues = {name: f"ct-bench-{pid}-{broker}-{name}" for name in names}
    publisher.wait_idle(timeout=10)  # what the last broker's runs committed goes out there first
    app.reconfigure(broker_url=stack.broker_url(broker, "ours"), task_default_queue=queues["ours"])
    raw_app.app.conf.broker_url = stack.broker_url(broker, "raw")
    raw_app.app._pool = None
    raw_app.app.amqp._producer_pool = None
    ours_env = {"ODOO_CELERY_BROKER_URL": stack.broker_url(broker, "ours"), "ODOO_CELERY_DEFAULT_QUEUE": queues["ours"]}
    ours_worker = stack.Worker(
        f"ct-bench-ours-{pid}@localhost",
        [sys.executable, str(stack.REPO / "odoo_celery.py"), "-c", str(ctx["config"])],
        queues["ours"],
        ctx["home"].root / f"worker-ours-{broker}.log",
        ours_env,
        cwd=str(ctx["home"].root),
    )
    result = ctx["results"].setdefault(broker, {})  # saved after each part: a failed run keeps what it measured
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.delete_queues, app.celery_app, [queues[name] for name in names[:5]])
        cleanup.callback(ours_worker.stop)
        ours_worker.start(app.celery_app)
        ours = Ours(ctx["registry"], ctx["ours_rows"], ours_worker, queues["ours-drain"])
        floor = OdooFloor.beside(ours, queues["floor-drain"])
        ids, markers = ctx["ids"], ctx["markers"]
        sides = [ours]
        if "main" in parts:
            raw_worker = stack.Worker(
                f"ct-bench-raw-{pid}@localhost",
                [sys.executable, "-m", "celery", "-A", "raw_app"],
                queues["raw"],
                ctx["home"].root / f"worker-raw-{broker}.log",
                {raw_app.BROKER_ENV: stack.broker_url(broker, "raw"), raw_app.DATABASE_ENV: ctx["raw_db"]},
                cwd=str(stack.BENCH),
            )
            raw_queues = [queues[name] for name in ("raw", "raw-drain", "raw-sink")]
            cleanup.callback(stack.delete_queues, raw_app.app, raw_queues)
            cleanup.callback(raw_worker.stop)
            raw_worker.start(raw_app.app)
            sides += [floor, Raw(raw_app, ctx["raw_rows"], raw_worker, queues["raw-drain"], queues["raw-sink"])]
        if len(sides) > 1:
            result.update(compare(broker, sides, ids, markers, preset, profiles))
            ctx["save"]()
        if "queue_job" in parts and first:
            result["queue_job"] = against_queue_job.bench(
                ours, ctx["queue_job"], ids, markers, preset, profiles, broker
            )
            ctx["save"]()
        if "memory" in parts and first:
            result["memory_floor"] = memory_floor(broker, ctx, ours, ids, markers, preset)
            ctx["save"]()
        if "backlog" in parts:
            result["backlog"] = backlog.bench(ours, floor, ids, markers, preset, profiles, broker)
            ctx["save"]()
            plot = ctx["out"].with_name(f"{ctx['out'].stem}-backlog-{broker}.png")
            backlog.plot(result["backlog"], plot)
            result["backlog"]["plot"] = str(plot)
            ctx["save"]()
        if "latency_backlog" in parts:
            size, probes = preset["latency_backlog"], preset["probes"]
            log(f"{broker}: latency under a backlog of {size} in another queue, {probes} probes")
            probe_ids = ids[size : size + probes]
            result["latency_backlog"] = backlog.latency_under_backlog(ours, ids[:size], probe_ids, next(markers))
            ctx["save"]()
        if "workflows" in parts:
            chord_ids = ids[: preset["chord"]]
            result["workflows"] = features.chord_vs_plain(
                ours, chord_ids, ids[preset["chord"]], markers, preset["runs"]
            )
            ctx["save"]()
        if "options" in parts:
            feature_ids = ids[: preset["feature_tasks"]]
            result["options"] = features.options_enqueue(ours, feature_ids, markers, preset["runs"], queues["sink"])
            ctx["save"]()
        if "metrics" in parts and first:
            result["metrics"] = metrics_cost.bench(ctx, ours, ids, markers, preset, broker)
            ctx["save"]()
        if "scheduled" in parts:
            result["scheduled"] = features.scheduled_at_rest(ours, ids, preset["scheduled"], markers)
            ctx["save"]()
        if "unique" in parts:
            feature_ids = ids[: preset["feature_tasks"]]
            result["unique"] = features.unique_enqueue(ours, feature_ids, markers, preset["runs"], queues["sink"])
            result["limits"] = features.limited_drain(ours, feature_ids, markers, preset["runs"])
            ctx["save"]()
        if "exit" in parts:
            env = {**os.environ, **ours_env, "ODOO_CELERY_DEFAULT_QUEUE": queues["exit"]}
            result["exit"] = features.exit_after_commit(
                ours, ctx["config"], ids, markers, preset["runs"], queues["exit"], env
            )


def compare(broker, sides, ids, markers, preset, profiles):
    """The paired runs: enqueue and drain of every side back to back, then latency of those that have a probe."""
    ours = sides[0]
    ids = ids[: preset["tasks"]]
    for side in sides:
        warm_up(side, ids[:WARMUP_TASKS], next(markers))
    measured = {side.name: collections.defaultdict(list) for side in sides}
    for number in range(1, preset["runs"] + 1):
        for side in sides:
            log(f"{broker}: run {number}/{preset['runs']}, {side.name}: {preset['tasks']} tasks")
            label = f"{broker}-{side.name}"
            run_profiles = profiles if number == 1 else None
            value = next(markers)
            run = {
                **fill(side, ids, value, run_profiles, label),
                **drain(side, preset["tasks"], value, run_profiles, label),
            }
            for key, result in run.items():
                measured[side.name][key].append(result)
        for side in sides:
            extra = {}
            if side.name == "raw":
                extra = side.noop_enqueue(preset["tasks"])
                stack.delete_queues(side.app, [side.sink_queue])
            elif side.name == "floor":
                extra = side.write_transactions(ids, next(markers))
            for key, result in extra.items():
                measured[side.name][key].append(result)
    probed = [side for side in sides if hasattr(side, "stamp")]
    for number in range(1, preset["runs"] + 1):
        for side in probed:
            log(f"{broker}: latency run {number}/{preset['runs']}, {side.name}: {preset['probes']} calls")
            measured[side.name]["latency"].append(measure_latency(side, ids[: preset["probes"]]))
    memory = {"ours": ours.worker.memory()}
    if "raw" in measured:
        memory["raw"] = next(side for side in sides if side.name == "raw").worker.memory()
    return {name: report.summarize(values, memory.get(name)) for name, values in measured.items()}


def memory_floor(broker, ctx, ours, ids, markers, preset):
    """PSS per pool process of the addon's worker and of the floor worker, each after the same drains."""
    import floor_app

    pid = os.getpid()
    queue, drain_queue = f"ct-bench-{pid}-{broker}-memory-floor", f"ct-bench-{pid}-{broker}-memory-floor-drain"
    floor_app.app.conf.broker_url = stack.broker_url(broker, "floor")
    worker = stack.Worker(
        f"ct-bench-floor-{pid}@localhost",
        [sys.executable, "-m", "celery", "-A", "floor_app"],
        queue,
        ctx["home"].root / f"worker-floor-{broker}.log",
        {
            floor_app.BROKER_ENV: stack.broker_url(broker, "floor"),
            floor_app.CONFIG_ENV: str(ctx["config"]),
            floor_app.DATABASE_ENV: ctx["floor_db"],
        },
        cwd=str(stack.BENCH),
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.delete_queues, floor_app.app, [queue, drain_queue])
        cleanup.callback(worker.stop)
        worker.start(floor_app.app)
        floor = OdooFloor(floor_app.app, ctx["floor_rows"], worker, ctx["floor_db"], drain_queue)
        tasks = ids[: preset["tasks"]]
        for side in (floor, ours):
            log(f"{broker}: memory, {side.name} worker: {len(tasks)} tasks")
            warm_up(side, tasks[:WARMUP_TASKS], next(markers))
            value = next(markers)
            fill(side, tasks, value)
            drain(side, len(tasks), value)
        return {"ours": ours.worker.memory(), "floor": worker.memory()}


def sizes(text):
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=stack.BENCH / "results" / "latest.json", help="JSON report")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few tasks, one run")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], action="append", help="default: both")
    parser.add_argument("--part", choices=PARTS, action="append", help="what to measure (repeatable); default: all")
    parser.add_argument("--tasks", type=int, help="tasks per drain run (and records per side)")
    parser.add_argument("--probes", type=int, help="calls per latency run")
    parser.add_argument("--runs", type=int, help="runs per measurement; the report gives median, min, max")
    parser.add_argument("--backlogs", type=sizes, help="backlog sizes, comma-separated (default 1000,10000,50000)")
    parser.add_argument("--finished-rows", type=int, help="finished task records for the backlog's second series")
    parser.add_argument("--finished-backlogs", type=sizes, help="backlog sizes of that series (default: --backlogs)")
    parser.add_argument("--relay-backlogs", type=sizes, help="backlogs only waited on: the relay's round timed")
    parser.add_argument("--no-backlog-floor", action="store_true", help="the backlog series for the addon only")
    parser.add_argument("--latency-backlog", type=int, help="backlog in another queue during latency probes")
    parser.add_argument("--chord", type=int, help="members of the chord (and plain calls it is compared with)")
    parser.add_argument("--feature-tasks", type=int, help="calls per run of the unique and limit comparisons")
    parser.add_argument("--databases", type=sizes, help="numbers of databases served, comma-separated (1,10,50)")
    parser.add_argument("--background-workers", type=sizes, help="counts of idle workers (default 1,4,16)")
    parser.add_argument("--background-backlog", type=int, help="tasks waiting while the idle workers are measured")
    parser.add_argument("--relay-backlog", type=int, help="tasks waiting for the background part's relay round")
    parser.add_argument("--scheduled", type=int, help="calls scheduled a day ahead in the scheduled part (100000)")
    parser.add_argument("--metrics-backlog", type=int, help="tasks waiting while the metrics' scrape is timed")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile the first run of each side into DIR")
    args = parser.parse_args(argv)
    preset = dict(PRESETS["quick" if args.quick else "full"])
    preset.update({key: getattr(args, key) for key in preset if getattr(args, key) is not None})
    preset["probes"] = min(preset["probes"], preset["tasks"])
    preset["backlog_floor"] = not args.no_backlog_floor
    preset["finished_backlogs"] = args.finished_backlogs
    preset["relay_backlogs"] = args.relay_backlogs or []
    parts = args.part or list(PARTS)
    if "backlog" in parts and importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("--part backlog plots its curves: pip install matplotlib")
    if "queue_job" in parts and not queue_job_side.available():
        raise SystemExit('--part queue_job needs: pip install --no-deps "odoo-addon-queue-job>=18.0,<18.1"')
    if "queue_job" in parts and not queue_job_side.gevent_starts():
        raise SystemExit(
            "--part queue_job: gevent cannot start here (its server's long-polling child would not):"
            " pip install -r bench/requirements.txt"
        )
    return args, preset, args.broker or ["redis", "rabbitmq"], parts


def record_count(preset, parts):
    """Records in the bench table: one per task of the largest drain, backlog or probe range."""
    counts = [preset["tasks"], preset["chord"] + 1, preset["feature_tasks"], features.EXIT_CALLS]
    if "backlog" in parts:
        counts += [*preset["backlogs"], *preset["relay_backlogs"]]
    if "latency_backlog" in parts:
        counts.append(preset["latency_backlog"] + preset["probes"])
    return max(counts)


def main(argv=None):
    args, preset, brokers, parts = parse_args(argv)
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
        log(f"creating database {odoo_db}")
        cleanup.callback(stack.drop_database, odoo_db)
        stack.create_odoo_database(config, odoo_db, "celery_task_bench", home.root / "install.log")
        ctx = {"home": home, "config": config, "out": args.out, "raw_db": raw_db, "markers": itertools.count(1)}
        if "databases" in parts:  # copied before anything connects to it
            ctx["template_db"] = f"ct_bench_{pid}_tpl"
            cleanup.callback(stack.drop_database, ctx["template_db"])
            stack.copy_database(odoo_db, ctx["template_db"])
            with contextlib.closing(Rows(ctx["template_db"], ODOO_TABLE)) as rows:
                rows.query("INSERT INTO {table} (value) SELECT 0 FROM generate_series(1, 10)")
        if "main" in parts:
            cleanup.callback(stack.drop_database, raw_db)
            stack.create_raw_database(raw_db, raw_app.TABLE, preset["tasks"])
        if "memory" in parts:
            ctx["floor_db"] = f"ct_bench_{pid}_floor"
            log(f"creating database {ctx['floor_db']}")
            cleanup.callback(stack.drop_database, ctx["floor_db"])
            stack.create_odoo_database(config, ctx["floor_db"], "ct_bench_floor", home.root / "install-floor.log")
        with warnings.catch_warnings():  # parse_config(args) means the same on every series
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            odoo.tools.config.parse_config(["-c", str(config)])
        cleanup.callback(sql_db.close_all)
        ours_rows = opened(cleanup, Rows(odoo_db, ODOO_TABLE))
        ours_rows.query(
            "INSERT INTO {table} (value, create_uid, write_uid, create_date, write_date)"
            " SELECT 0, 1, 1, now(), now() FROM generate_series(1, %s)",
            [record_count(preset, parts)],
        )
        ctx.update(registry=Registry(odoo_db), ours_rows=ours_rows, ids=ours_rows.ids(record_count(preset, parts)))
        if "main" in parts:
            ctx["raw_rows"] = opened(cleanup, Rows(raw_db, raw_app.TABLE))
        if "memory" in parts:
            ctx["floor_rows"] = opened(cleanup, Rows(ctx["floor_db"], ODOO_TABLE))
            ctx["floor_rows"].query(
                "INSERT INTO {table} (value) SELECT 0 FROM generate_series(1, %s)", [preset["tasks"]]
            )
        if "queue_job" in parts:
            ctx["queue_job"] = queue_job_side.deploy(cleanup, home, f"ct_bench_{pid}_qj", preset["tasks"], log)
        results = ctx["results"] = {}

        def save():
            out = {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "settings": {
                    **preset,
                    "parts": parts,
                    "warmup_tasks": WARMUP_TASKS,
                    "probe_interval_s": PROBE_INTERVAL,
                },
                "targets": report.TARGETS,
                "results": results,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2) + "\n")

        ctx["save"] = save
        for broker in brokers:
            bench_broker(broker, ctx, preset, profiles, parts, broker == brokers[0])
            results[broker].update(report.verdict(results[broker], broker))
        if "databases" in parts:
            results["databases"] = many_databases.bench(ctx, brokers[0], preset["databases"])
        if "background" in parts:
            results["background"] = background_cost.bench(
                ctx, brokers[0], preset["background_workers"], preset["background_backlog"]
            )
            results["background"]["relay"] = background_cost.relay_round(ctx, preset["relay_backlog"])
        save()
        print(report.table(results))
        log(f"written to {args.out}")
        failed = False


def opened(cleanup, rows):
    cleanup.callback(rows.close)
    return rows


if __name__ == "__main__":
    main()

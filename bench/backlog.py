"""Flat cost with the backlog: the drain and the relay as the queue and the task table grow.

Drains of ``--backlogs`` tasks (1,000 to 50,000) on an empty task table, then with ``--finished-rows``
finished task records in it (a million, as months of history would leave), for the addon and the
floor; at each size the relay's round is timed in this process while the backlog waits, and at the
largest the relay's statements are EXPLAINed. ``--relay-backlogs``: larger backlogs that only wait,
not drained, for the relay's round (a drain of 50,000 takes a quarter of an hour on a busy 2-core
machine). Also: a probe's latency while a backlog of another queue drains. Growth shows as a falling
tasks/s or a rising CPU per task from one size to the next.
"""

import datetime
import time

import measure
import relay_cost
import stack

# What months of finished tasks leave: done rows of one task name, spread over the last weeks.
FINISHED_ROWS = """
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context, call_repr, queue,
        state, attempts, receives, unique_running, notice_pending, worker_host, result,
        create_date, sent_at, started_at, done_at, write_date
    )
    SELECT gen_random_uuid()::text, 'ct.bench.item.touch', current_database(), 1, 'ct.bench.item', 'touch',
           '[' || (mod(g, 1000) + 1) || ']', '{"args": [' || g || '], "kwargs": {}}', '{"lang": "en_US", "tz": "UTC"}',
           'ct.bench.item(' || (mod(g, 1000) + 1) || ',).touch(' || g || ')', %(queue)s,
           'done', 1, 'nothing', false, false, 'celery@bench', 'null',
           t, t + interval '5 ms', t + interval '10 ms', t + interval '20 ms', t + interval '20 ms'
      FROM generate_series(1, %(count)s) AS g,
           LATERAL (SELECT (now() AT TIME ZONE 'UTC') - interval '1 hour' - g * interval '2 seconds' AS t) AS at
"""

EXPLAINED = ("EXPIRE_TASKS", "STRANDED_TASKS", "UNSTARTED_QUEUES", "DEFERRED_LIMITS")


def insert_finished(rows, count, queue):
    """``count`` finished records in one statement, then ANALYZE, as autovacuum would soon do."""
    started = time.perf_counter()
    with rows.conn.cursor() as cr:
        cr.execute(FINISHED_ROWS, {"queue": queue, "count": count})
        cr.execute("ANALYZE celery_task")
    return time.perf_counter() - started


def explain(rows, queue):
    """EXPLAIN (ANALYZE, BUFFERS) of the relay's statements on the current table, each rolled back."""
    from odoo.addons.celery_task import task_record

    cutoff = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=10)
    params = {"queues": [queue], "cutoff": cutoff, "limit": 500}
    plans = {}
    with rows.conn.cursor() as cr:
        for name in EXPLAINED:
            cr.execute("BEGIN")
            try:
                cr.execute("EXPLAIN (ANALYZE, BUFFERS) " + getattr(task_record, name), params)
                plans[name] = "\n".join(line for (line,) in cr.fetchall())
            finally:
                cr.execute("ROLLBACK")
    return plans


def drain_backlog(side, ids, value, profiles, label, relay=False, plans=None):
    """Fill a backlog of one task per id; while it waits, time the relay's round and EXPLAIN it (the addon,
    when asked); then drain it."""
    measure.fill_backlog(side, ids, value)
    result = {"backlog": len(ids)}
    if relay:
        result["relay"] = relay_cost.relay_rounds([side.drain_queue])
    if plans is not None:
        plans.update(explain(side.rows, side.drain_queue))
    result.update(measure.drain(side, len(ids), value, profiles, f"{label}-{len(ids)}"))
    return result


def bench(ours, floor, ids, markers, settings, profiles, broker):
    """The backlog series: the addon on an empty table (and the floor), then the addon with finished rows."""
    sizes = settings["backlogs"]
    series = {"ours": [], "floor": [], "ours_finished": [], "relay_only": []}
    plans = {"empty": {}, "finished": {}}
    for size in sizes:
        measure.log(f"{broker}: backlog of {size}: ours" + (", then the floor" if settings["backlog_floor"] else ""))
        ours.reset()
        explained = plans["empty"] if size == max(sizes) else None
        run = drain_backlog(ours, ids[:size], next(markers), profiles, f"{broker}-backlog-ours", True, explained)
        series["ours"].append(run)
        if settings["backlog_floor"]:
            series["floor"].append(drain_backlog(floor, ids[:size], next(markers), profiles, f"{broker}-backlog-floor"))
    for size in settings["relay_backlogs"]:
        measure.log(f"{broker}: the relay's round over a waiting backlog of {size}, not drained")
        ours.reset()
        measure.fill_backlog(ours, ids[:size], next(markers))
        series["relay_only"].append({"backlog": size, "relay": relay_cost.relay_rounds([ours.drain_queue])})
        plans["waiting"] = explain(ours.rows, ours.drain_queue)
        stack.purge_queues(ours.app, [ours.drain_queue])
    ours.reset()
    count = settings["finished_rows"]
    measure.log(f"{broker}: inserting {count} finished task records")
    inserted_s = insert_finished(ours.rows, count, ours.drain_queue)
    finished_sizes = settings["finished_backlogs"] or sizes
    for size in finished_sizes:
        measure.log(f"{broker}: backlog of {size} with {count} finished records")
        explained = plans["finished"] if size == max(finished_sizes) else None
        label = f"{broker}-backlog-finished"
        series["ours_finished"].append(drain_backlog(ours, ids[:size], next(markers), profiles, label, True, explained))
    ours.reset()
    return {"series": series, "explain": plans, "finished_rows": count, "finished_insert_s": inserted_s}


def latency_under_backlog(ours, backlog_ids, probe_ids, value):
    """Light-load latency, then the same probes while a backlog drains from another queue the worker consumes."""
    ours.reset()
    light = measure.measure_latency(ours, probe_ids)
    measure.fill_backlog(ours, backlog_ids, value)
    ours.start_draining()
    loaded = measure.measure_latency(ours, probe_ids)
    left = len(backlog_ids) - ours.rows.count_value(value)
    ours.stop_draining()  # what is left is dropped, not drained: only the probes were measured
    stack.purge_queues(ours.app, [ours.drain_queue])
    ours.reset()
    return {"backlog": len(backlog_ids), "left_after_probes": left, "light": light, "under_backlog": loaded}


def plot(part, path):
    """Tasks/s, worker CPU ms/task and the relay's round against the backlog, one line per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = part["series"]
    labels = {
        "ours": "ours",
        "ours_finished": f"ours, {part['finished_rows']:,} finished rows",
        "floor": "odoo floor",
        "relay_only": "ours, backlog waiting (not drained)",
    }
    panels = (
        ("drain_tps", "drain tasks/s"),
        ("drain_cpu_ms", "worker CPU ms/task"),
        ("drain_machine_cpu_ms", "machine CPU ms/task"),
        ("relay_ms", "relay round ms (this process)"),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(18, 4.5))
    for axis, (key, title) in zip(axes, panels, strict=True):
        for name, runs in series.items():
            measured = [run for run in runs if ("relay" in run if key == "relay_ms" else key in run)]
            points = [(run["backlog"], run["relay"]["ms"] if key == "relay_ms" else run[key]) for run in measured]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=labels[name])
        axis.set_xscale("log")
        axis.set_xlabel("backlog (tasks)")
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""The addon against OCA queue_job, each drained the two ways its users meet: a backlog and a live stream.

- **backlog**: the side's consumer (the addon's Celery worker, queue_job's whole Odoo server) is stopped,
  the jobs are enqueued, one committed call each, then the consumer is started, as a deployment
  restarts or as OCA's ``benchmark_jobs.py`` starts its job runner after enqueueing;
- **live**: the consumer runs while this process enqueues the jobs, one committed call each, from
  another thread: the caller and the consumer share the machine, as they do in production.

Both are timed from the first job seen done to the last, so the consumer's start-up (queue_job's runner
waits 5 s before it begins) and the first call are left out. The two sides run back to back, mode by
mode, run after run; then the light-load latency of each.
"""

import collections
import concurrent.futures
import time

import measure
import report

MODES = ("backlog", "live")


def backlog(side, ids, value, profiles, label):
    """Enqueued while the consumer is stopped; timed once it has started."""
    side.stop_consumer()
    side.reset()
    side.route(side.worker.queue)
    enqueued = measure.enqueue(side, ids, value)
    side.start_consumer()
    return {**enqueued, **measure.window(side, len(ids), value, profiles, label)}


def live(side, ids, value, profiles, label):
    """Enqueued from another thread of this process while the consumer runs. Also how long the drain went on
    after the caller's last call: near 0, the consumer kept up and its jobs/s is the caller's pace."""
    side.reset()
    side.route(side.worker.queue)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as caller:
        enqueued = caller.submit(enqueue_until, side, ids, value)
        drained = measure.window(side, len(ids), value, profiles, label)
        finished = time.perf_counter()
        result, last_call = enqueued.result()
        return {**result, **drained, "drained_after_last_call_s": finished - last_call}


def enqueue_until(side, ids, value):
    """:func:`measure.enqueue`, and when it returned."""
    return measure.enqueue(side, ids, value), time.perf_counter()


def bench(ours, queue_job, ids, markers, settings, profiles, broker):
    """Per run, each mode for ours then queue_job; then the latency runs. Spreads and paired ratios."""
    sides = (ours, queue_job)
    ids = ids[: settings["tasks"]]
    measured = {mode: {side.name: collections.defaultdict(list) for side in sides} for mode in MODES}
    for number in range(1, settings["runs"] + 1):
        for mode, run in zip(MODES, (backlog, live), strict=True):
            for side in sides:
                measure.log(f"{broker}: run {number}/{settings['runs']}, {mode}, {side.name}: {len(ids)} jobs")
                label = f"{broker}-{mode}-{side.name}"
                result = run(side, ids, next(markers), profiles if number == 1 else None, label)
                for key, value in result.items():
                    measured[mode][side.name][key].append(value)
    latency = {side.name: collections.defaultdict(list) for side in sides}
    for number in range(1, settings["runs"] + 1):
        for side in sides:
            measure.log(f"{broker}: latency run {number}/{settings['runs']}, {side.name}: {settings['probes']} calls")
            latency[side.name]["latency"].append(measure.measure_latency(side, ids[: settings["probes"]]))
    return {
        "jobs": len(ids),
        "modes": {
            mode: {name: report.summarize(values) for name, values in by_side.items()}
            for mode, by_side in measured.items()
        },
        "latency": {name: report.summarize(values) for name, values in latency.items()},
    }

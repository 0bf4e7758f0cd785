"""What every part measures the same way: fill a queue, drain it, time commit-to-start latencies."""

import contextlib
import os
import statistics
import sys
import time

import report
import stack

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
    side.hold()
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

    timeout = max(120, total / 10)
    cpu = side.worker.cpu_seconds()
    side.start_draining()
    first, seen = stack.wait_for(lambda: done(1), timeout, interval=0.02, what=f"{side.name} to start draining")
    try:
        last, _ = stack.wait_for(lambda: done(total), timeout, interval=0.02, what=f"{side.name} to drain {total}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {side.rows.count_value(value)} done; {side.describe()}") from None
    cpu = side.worker.cpu_seconds() - cpu
    side.stop_draining()
    return seen, first, last, cpu


def drain(side, total, value, profiles=None, label=""):
    """Tasks per second; the worker's CPU ms per task (all its processes, less noisy on a busy machine) and
    its main process's part; the whole machine's CPU ms per task, PostgreSQL's and the broker's parts; the
    share of CPU time stolen by the hypervisor meanwhile."""
    busy, stolen = stack.machine_cpu_seconds()
    services, main_process = stack.service_cpu_seconds(), stack.process_cpu_seconds(side.worker.process.pid)
    started = time.perf_counter()
    with maybe(profiles, "worker", side.worker.process.pid, f"{label}-drain"):
        seen, first, last, cpu = consume(side, total, value)
    elapsed = time.perf_counter() - started
    busy_after, stolen_after = stack.machine_cpu_seconds()
    services_after = stack.service_cpu_seconds()
    main_process = stack.process_cpu_seconds(side.worker.process.pid) - main_process
    return {
        "drain_tps": (total - seen) / (last - first),
        "drain_cpu_ms": cpu * 1000 / total,
        "drain_main_process_cpu_ms": main_process * 1000 / total,
        **{f"drain_{name}_cpu_ms": (services_after[name] - services[name]) * 1000 / total for name in services},
        "drain_machine_cpu_ms": (busy_after - busy) * 1000 / total,
        "drain_steal_pct": (stolen_after - stolen) * 100 / (elapsed * (os.cpu_count() or 1)),
    }


def fill_backlog(side, ids, value, method="touch", batch=100):
    """A backlog of one task per id, ``batch`` calls per committed transaction: fast, and the same records and
    messages as one call per transaction."""
    side.hold()
    for start in range(0, len(ids), batch):
        side.touch_many(ids[start : start + batch], value, method)
    side.settle()


def median_of(runs):
    """The median of each key over a list of dicts of numbers."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


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

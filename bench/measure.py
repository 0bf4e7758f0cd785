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
    """Publish one write per id while no worker reads the queue: :func:`enqueue` into the side's held queue."""
    side.reset()
    side.hold()
    return enqueue(side, ids, value, profiles, label)


def enqueue(side, ids, value, profiles=None, label=""):
    """One write per id, each its own committed call; wall and CPU ms of this process per call.

    Also the wall time until every message is on the broker: the addon's caller returns before its
    publisher thread has sent them.
    """
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


def seen_done(side, value, at_least, timeout):
    """(time, tasks done) once at least ``at_least`` rows hold ``value``."""

    def done():
        count = side.rows.count_value(value)
        return (time.perf_counter(), count) if count >= at_least else None

    try:
        return stack.wait_for(done, timeout, interval=0.02, what=f"{side.name} to have done {at_least}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {side.rows.count_value(value)} done; {side.describe()}") from None


def drain_timeout(total):
    return max(120, total / 10)


def consume(side, total, value):
    """Let the worker consume the filled queue: (tasks done at the first sighting, its time, end time).

    Timed from the first task seen done, not from ``add_consumer``: the Redis transport only
    notices a new queue when its current blocking pop times out, up to a second later.
    """
    side.start_draining()
    first, seen = seen_done(side, value, 1, drain_timeout(total))
    last, _ = seen_done(side, value, total, drain_timeout(total))
    side.stop_draining()
    return seen, first, last


def usage(side):
    """CPU seconds so far: the machine's (busy, stolen), PostgreSQL's, the broker's, the side's worker (all its
    processes) and its main process, this process; the time and the 1-minute load average."""
    busy, stolen = stack.machine_cpu_seconds()
    return {
        "time": time.perf_counter(),
        "load": os.getloadavg()[0],
        "busy": busy,
        "stolen": stolen,
        "worker": side.worker.cpu_seconds(),
        "main_process": stack.process_cpu_seconds(side.worker.process.pid),
        "bench": stack.process_cpu_seconds(os.getpid()),
        **stack.service_cpu_seconds(),
    }


def costs(before, after, tasks):
    """CPU ms per task between two :func:`usage` readings, by where it went; the share of the machine's CPU
    time stolen by the hypervisor, and the share used by everything else (other programs, idle workers)."""
    spent = {key: after[key] - before[key] for key in before}
    capacity = spent["time"] * (os.cpu_count() or 1)
    measured = spent["worker"] + spent["postgres"] + spent["broker"] + spent["bench"]
    return {
        "drain_cpu_ms": spent["worker"] * 1000 / tasks,
        "drain_main_process_cpu_ms": spent["main_process"] * 1000 / tasks,
        **{f"drain_{name}_cpu_ms": spent[name] * 1000 / tasks for name in stack.SERVICE_PROCESSES},
        "drain_machine_cpu_ms": spent["busy"] * 1000 / tasks,
        "drain_steal_pct": spent["stolen"] * 100 / capacity,
        "drain_others_cpu_pct": max(0.0, spent["busy"] - measured) * 100 / capacity,
        "load_1min": before["load"],
    }


def drain(side, total, value, profiles=None, label=""):
    """Tasks per second; the worker's CPU ms per task (all its processes, less noisy on a busy machine) and
    its main process's part; the whole machine's CPU ms per task, PostgreSQL's and the broker's parts; the
    share of CPU time stolen by the hypervisor meanwhile."""
    before = usage(side)
    with maybe(profiles, "worker", side.worker.process.pid, f"{label}-drain"):
        seen, first, last = consume(side, total, value)
    return {"drain_tps": (total - seen) / (last - first), **costs(before, usage(side), total)}


def window(side, total, value, profiles=None, label=""):
    """A drain the side's consumer has begun by itself: tasks/s and the costs per task from the first task seen
    done to the last, so the consumer's start (or the caller's first call) is left out."""
    timeout = drain_timeout(total)
    first, seen = seen_done(side, value, 1, timeout)
    if seen >= total:
        raise RuntimeError(f"{side.name}: all {total} done when first seen, too few to time: raise --tasks")
    before = usage(side)
    with maybe(profiles, "worker", side.worker.process.pid, f"{label}-drain"):
        last, _ = seen_done(side, value, total, timeout)
    return {"drain_tps": (total - seen) / (last - first), **costs(before, usage(side), total - seen)}


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
    try:
        started = stack.wait_for(lambda: side.rows.started(ids), timeout=60, what=f"{side.name} latency probes")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {side.describe()}") from None
    return {
        "from_commit": latency_summary(begun - committed for (committed, _), begun in zip(sent, started, strict=True)),
        "from_return": latency_summary(begun - returned for (_, returned), begun in zip(sent, started, strict=True)),
    }

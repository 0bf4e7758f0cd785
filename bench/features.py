"""The addon's features at volume, each against the plain call in the same run: a chord's members, unique
tasks, concurrency limits, per-call options, tasks scheduled a day ahead; and a process that exits right
after its commits."""

import re
import subprocess
import sys
import time

import measure
import relay_cost
import stack

EXIT_SCRIPT = stack.BENCH / "exit_after_commit.py"
EXIT_CALLS = 5
AFTER_EXIT = 5.0
EXIT_PROBLEMS = {"atexit_after_shutdown": "can't register atexit after shutdown", "broker_refused": "broker refused"}


def chord_vs_plain(ours, ids, anchor_id, markers, runs):
    """Per run: a chord of one ``touch`` per id (and a callback), then the same calls plain, each enqueued in
    one transaction and drained by the worker. Members' tasks/s against the plain calls'."""
    measured = {"members": len(ids), "chord": [], "plain": []}
    for number in range(1, runs + 1):
        measure.log(f"workflows: run {number}/{runs}: a chord of {len(ids)}, then {len(ids)} plain calls")
        for kind in ("chord", "plain"):
            value = next(markers)
            ours.reset()
            ours.rows.query("UPDATE {table} SET results_count = 0 WHERE id = %s", [anchor_id])
            ours.hold()
            started = time.perf_counter()
            if kind == "chord":
                ours.chord(ids, anchor_id, value)
            else:
                ours.touch_many(ids, value)
            run = {"enqueue_ms_per_task": (time.perf_counter() - started) * 1000 / len(ids)}
            ours.settle()
            run.update(measure.drain(ours, len(ids), value))
            if kind == "chord":
                drained = time.perf_counter()
                stack.wait_for(
                    lambda: ours.rows.query("SELECT results_count FROM {table} WHERE id = %s", [anchor_id])[0][0],
                    60,
                    0.01,
                    "the chord's callback",
                )
                run["callback_after_drain_s"] = time.perf_counter() - drained
            measured[kind].append(run)
    return measured


def enqueue_each(ours, ids, markers, runs, sink_queue, calls, part):
    """Per run and kind of ``calls`` (``{kind: call(item_id, value)}``): one call per id, each in its own committed
    transaction, to a queue nobody reads; ms and this process's CPU ms per call."""
    measured = {kind: [] for kind in calls}
    ours.route(sink_queue)
    for number in range(1, runs + 1):
        measure.log(f"{part}: run {number}/{runs}: {len(ids)} calls of each of {', '.join(calls)}")
        for kind, call in calls.items():
            ours.reset()
            value = next(markers)
            started, cpu = time.perf_counter(), time.process_time()
            for item_id in ids:
                call(item_id, value)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            ours.settle()
            measured[kind].append({"enqueue_ms": wall * 1000 / len(ids), "enqueue_cpu_ms": cpu * 1000 / len(ids)})
    stack.delete_queues(ours.app, [sink_queue])
    return measured


def unique_enqueue(ours, ids, markers, runs, sink_queue):
    """``touch_unique`` (each call on its own record, so each inserts) against plain ``touch``."""
    calls = {"touch": ours.touch, "touch_unique": lambda item_id, value: ours.touch(item_id, value, "touch_unique")}
    return enqueue_each(ours, ids, markers, runs, sink_queue, calls, "unique")


def limited_drain(ours, ids, markers, runs):
    """Per run: a backlog of ``touch_limited`` (concurrency=2, the worker's pool size) against plain ``touch``."""
    measured = {"touch": [], "touch_limited": []}
    for number in range(1, runs + 1):
        measure.log(f"limits: run {number}/{runs}: {len(ids)} plain, then {len(ids)} limited tasks")
        for method in measured:
            ours.reset()
            value = next(markers)
            measure.fill_backlog(ours, ids, value, method)
            measured[method].append(measure.drain(ours, len(ids), value))
    return measured


def exit_after_commit(ours, config, ids, markers, runs, queue, env):
    """Per run: the script's five calls; seconds from its last commit until all five are on the broker and
    marked sent, until it exited; whether its output has the errors of a publisher cut short."""
    measured = []
    for number in range(1, runs + 1):
        measure.log(f"exit: run {number}/{runs}")
        ours.reset()
        stack.delete_queues(ours.app, [queue])
        command = [sys.executable, str(EXIT_SCRIPT), str(config), ours.registry.db_name]
        command += [",".join(map(str, ids[:EXIT_CALLS])), str(next(markers))]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        while len([line for line in lines if line.startswith("committed ")]) < EXIT_CALLS:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        commits = [float(line.split()[2]) for line in lines if line.startswith("committed ")]
        run = {"commits": len(commits), "on_broker_s": None, "marked_sent_s": None}
        if len(commits) == EXIT_CALLS:
            last = commits[-1]
            run.update(_watch_exit(ours, queue, last, process))
        process.wait(60)
        output = "".join(lines) + process.stdout.read()
        run["exit_code"] = process.returncode
        run.update({key: text in output.lower() for key, text in EXIT_PROBLEMS.items()})
        run["output_tail"] = re.sub(r"\s+", " ", output[-600:])
        measured.append(run)
    stack.delete_queues(ours.app, [queue])
    return measured


def _watch_exit(ours, queue, last_commit, process, timeout=30.0):
    """Poll the broker and the records every 5 ms from the last commit: when each condition first held
    (None: not within ``timeout``, nor AFTER_EXIT seconds after the script exited)."""
    seen = {"on_broker_s": None, "marked_sent_s": None, "exited_s": None}
    deadline = time.time() + timeout
    while time.time() < deadline and None in seen.values():
        now = time.time()
        if seen["exited_s"] is None and process.poll() is not None:
            seen["exited_s"] = now - last_commit
            deadline = min(deadline, now + AFTER_EXIT)  # nobody else publishes them: no worker reads the queue
        if seen["on_broker_s"] is None and stack.message_count(ours.app, queue) >= EXIT_CALLS:
            seen["on_broker_s"] = now - last_commit
        if seen["marked_sent_s"] is None:
            sent = ours.rows.query("SELECT count(*) FROM celery_task WHERE sent_at IS NOT NULL")[0][0]
            if sent >= EXIT_CALLS:
                seen["marked_sent_s"] = now - last_commit
        time.sleep(0.005)
    return seen


def options_enqueue(ours, ids, markers, runs, sink_queue):
    """``touch`` with options of its own (``with_delay(priority=1)``) against plain ``touch``."""
    calls = {"plain": ours.touch, "with_options": lambda item_id, value: ours.touch_delayed(item_id, value, priority=1)}
    return enqueue_each(ours, ids, markers, runs, sink_queue, calls, "options")


SCHEDULED_BATCH = 1000
SCHEDULED_SETTLE = 12.0  # two relay rounds and many rounds of the publisher of due tasks


def scheduled_at_rest(ours, ids, count, markers):
    """``count`` calls scheduled a day ahead, against none: the worker's memory, its queue on the broker, and the
    relay's round (this process). They wait in PostgreSQL: memory and queue length must not grow."""

    def state():
        time.sleep(SCHEDULED_SETTLE)
        return {
            "memory": ours.worker.memory(),
            "queued_messages": stack.message_count(ours.app, ours.worker.queue),
            "relay": relay_cost.relay_rounds([ours.worker.queue]),
        }

    ours.reset()
    ours.route(ours.worker.queue)
    measure.log(f"scheduled: the worker with nothing scheduled, then with {count} calls due in a day")
    before = state()
    value = next(markers)
    started = time.perf_counter()
    for start in range(0, count, SCHEDULED_BATCH):
        batch = [ids[(start + offset) % len(ids)] for offset in range(min(SCHEDULED_BATCH, count - start))]
        ours.touch_many(batch, value, countdown=86400)
    enqueue_s = time.perf_counter() - started
    ours.settle()
    after = state()
    states = dict(ours.rows.query("SELECT state, count(*) FROM celery_task GROUP BY 1"))
    ours.reset()
    return {"scheduled": count, "enqueue_s": enqueue_s, "states": states, "none": before, "scheduled_day_ahead": after}

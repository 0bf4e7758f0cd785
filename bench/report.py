"""Turns the runs into the report: spreads, paired ratios, the targets, and the printed tables."""

import functools
import statistics

TARGETS = {
    "enqueue_vs_write_txn": 1.25,
    "drain_vs_floor": 0.9,
    "drain_vs_queue_job": 4.0,
    "latency_p50_ms": 3.0,
    "latency_p99_ms": 6.0,
    "memory_over_floor_mib": 10.0,
    "chord_drain_ratio": 0.9,
    "backlog_flat": 0.1,
}
PERCENTILES = ("p50", "p95", "p99")
QUEUE_JOB_COMPARED = ("drain_tps", "drain_cpu_ms", "drain_machine_cpu_ms", "enqueue_ms")
LATENCY_ORIGINS = {"from_commit": "latency from COMMIT", "from_return": "latency from commit()"}
SIDES = ("ours", "floor", "raw")
QUEUE_JOB_SIDES = ("ours", "queue_job")


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarize(measured, memory=None):
    """Spread of every measured list; latencies per origin and percentile."""
    latencies = measured.pop("latency", [])
    summary = {key: spread(values) for key, values in measured.items()}
    if latencies:
        summary["latency_ms"] = {
            origin: {key: spread([run[origin][key] for run in latencies]) for key in PERCENTILES}
            for origin in LATENCY_ORIGINS
        }
    if memory:
        summary["memory"] = memory
    return summary


def paired(ours, other):
    """Ratio per run, each pair having run back to back under the same machine load; then their spread."""
    return spread([a / b for a, b in zip(ours["runs"], other["runs"], strict=True)])


def runs_of(runs, key):
    return spread([run[key] for run in runs])


def pool_pss(memory):
    return max(child["pss_mib"] for child in memory["pool"])


def verdict(result, broker):
    """The ratios between the sides (and parts) measured, and which targets their medians meet."""
    ours, floor, raw = (result.get(name) for name in SIDES)
    ratios, met = {}, {}
    if raw:
        ratios.update(
            enqueue=paired(ours["enqueue_ms"], raw["noop_enqueue_ms"]),
            enqueue_cpu=paired(ours["enqueue_cpu_ms"], raw["noop_enqueue_cpu_ms"]),
            enqueue_published=paired(ours["enqueue_published_ms"], raw["noop_enqueue_ms"]),
            enqueue_floor=paired(floor["write_txn_ms"], raw["noop_enqueue_ms"]),
            drain=paired(ours["drain_tps"], raw["drain_tps"]),
            drain_cpu=paired(ours["drain_cpu_ms"], raw["drain_cpu_ms"]),
            drain_machine_cpu=paired(ours["drain_machine_cpu_ms"], raw["drain_machine_cpu_ms"]),
            drain_vs_floor=paired(ours["drain_tps"], floor["drain_tps"]),
            enqueue_vs_write_txn=paired(ours["enqueue_ms"], floor["write_txn_ms"]),
        )
        met["enqueue"] = ratios["enqueue_vs_write_txn"]["median"] <= TARGETS["enqueue_vs_write_txn"]
        met["drain_floor"] = ratios["drain_vs_floor"]["median"] >= TARGETS["drain_vs_floor"]
    if ours and "latency_ms" in ours:
        for key in ("p50", "p99"):
            met[f"latency_{key}"] = ours["latency_ms"]["from_commit"][key]["median"] <= TARGETS[f"latency_{key}_ms"]
    if "queue_job" in result:
        ratios.update(queue_job_ratios(result["queue_job"]))
        for mode in result["queue_job"]["modes"]:
            met[f"drain_queue_job_{mode}"] = (
                ratios[f"queue_job_{mode}_drain_tps"]["median"] >= TARGETS["drain_vs_queue_job"]
            )
    if "memory_floor" in result:
        memory = result["memory_floor"]
        over = pool_pss(memory["ours"]) - pool_pss(memory["floor"])
        ratios["memory_pss"] = spread([pool_pss(memory["ours"]) / pool_pss(memory["floor"])])
        ratios["memory_pss_over_floor_mib"] = spread([over])
        met["memory"] = over <= TARGETS["memory_over_floor_mib"]
    if "workflows" in result:
        chord, plain = result["workflows"]["chord"], result["workflows"]["plain"]
        ratios["chord_drain"] = paired(runs_of(chord, "drain_tps"), runs_of(plain, "drain_tps"))
        ratios["chord_enqueue"] = paired(runs_of(chord, "enqueue_ms_per_task"), runs_of(plain, "enqueue_ms_per_task"))
        met["chord_drain"] = ratios["chord_drain"]["median"] >= TARGETS["chord_drain_ratio"]
    if "unique" in result:
        unique = result["unique"]
        ratios["unique_enqueue"] = paired(
            runs_of(unique["touch_unique"], "enqueue_ms"), runs_of(unique["touch"], "enqueue_ms")
        )
        limits = result["limits"]
        ratios["limited_drain"] = paired(
            runs_of(limits["touch_limited"], "drain_tps"), runs_of(limits["touch"], "drain_tps")
        )
        ratios["limited_drain_cpu"] = paired(
            runs_of(limits["touch_limited"], "drain_cpu_ms"), runs_of(limits["touch"], "drain_cpu_ms")
        )
    if "options" in result:
        options = result["options"]
        ratios["options_enqueue"] = paired(
            runs_of(options["with_options"], "enqueue_ms"), runs_of(options["plain"], "enqueue_ms")
        )
    if "backlog" in result:
        for name, runs in result["backlog"]["series"].items():
            if len(runs) > 1 and "drain_tps" in runs[0]:
                ratios[f"backlog_{name}_tps_largest_vs_smallest"] = spread(
                    [runs[-1]["drain_tps"] / runs[0]["drain_tps"]]
                )
                ratios[f"backlog_{name}_cpu_largest_vs_smallest"] = spread(
                    [runs[-1]["drain_cpu_ms"] / runs[0]["drain_cpu_ms"]]
                )
                if name != "floor":
                    flat = TARGETS["backlog_flat"]
                    met[f"backlog_{name}_flat"] = (
                        runs[-1]["drain_tps"] / runs[0]["drain_tps"] >= 1 - flat
                        and runs[-1]["drain_cpu_ms"] / runs[0]["drain_cpu_ms"] <= 1 + flat
                    )
    if "latency_backlog" in result:
        part = result["latency_backlog"]
        for key in ("p50", "p99"):
            ratios[f"latency_backlog_{key}"] = spread(
                [part["under_backlog"]["from_commit"][key] / part["light"]["from_commit"][key]]
            )
    return {"ratios": ratios, "targets_met": met}


def queue_job_ratios(part):
    """Ours/queue_job per run, each mode's pair having run back to back; latency from COMMIT."""
    ratios = {}
    for mode, sides in part["modes"].items():
        for key in QUEUE_JOB_COMPARED:
            ratios[f"queue_job_{mode}_{key}"] = paired(*(sides[name][key] for name in QUEUE_JOB_SIDES))
    for key in ("p50", "p99"):
        ours, theirs = (part["latency"][name]["latency_ms"]["from_commit"][key] for name in QUEUE_JOB_SIDES)
        ratios[f"queue_job_latency_{key}"] = paired(ours, theirs)
    return ratios


def fmt(values, digits):
    if not values:
        return ""
    return f"{values['median']:.{digits}f} [{values['min']:.{digits}f}-{values['max']:.{digits}f}]"


def versus(first, second, key, digits):
    """``first / second`` of one measurement over the runs of two kinds."""
    return f"{fmt(runs_of(first, key), digits)} / {fmt(runs_of(second, key), digits)}"


def cost(measured):
    """A round timed by relay_cost: its ms, statements and connections."""
    return (
        f"{measured['ms']:.1f} ms, {measured['statements']:.0f} statements, {measured['connections']:.0f} connections"
    )


def goal(text, met):
    return f"{text} {'met' if met else 'NOT MET'}"


def main_rows(result):
    """(metric, ours, floor, raw, ours/raw, target) rows of one broker."""
    sides = {name: result.get(name) or {} for name in SIDES}
    ratios, met = result["ratios"], result["targets_met"]

    def row(label, key, digits, raw_key=None, raw_ratio=None, target=""):
        cells = [fmt(sides[name].get(key), digits) for name in ("ours", "floor")]
        cells.append(fmt(sides["raw"].get(raw_key or key), digits))
        cells.append(fmt(ratios.get(raw_ratio), 2) if raw_ratio else "")
        return (label, *cells, target)

    def target(name, text):
        return goal(text, met[name]) if name in met else ""

    enqueue_goal = target("enqueue", f"ours/odoo floor <= {TARGETS['enqueue_vs_write_txn']}")
    rows = [
        row("enqueue ms/call (raw: no-op)", "enqueue_ms", 3, "noop_enqueue_ms", "enqueue", target=enqueue_goal),
        row("  caller CPU ms/call", "enqueue_cpu_ms", 3, "noop_enqueue_cpu_ms", "enqueue_cpu"),
        row("  until all on the broker ms/call", "enqueue_published_ms", 3, "noop_enqueue_ms", "enqueue_published"),
        ("  raw apply_async(touch) ms/call", "", "", fmt(sides["raw"].get("enqueue_ms"), 3), "", ""),
        ("  odoo floor: a write transaction alone ms", "", fmt(sides["floor"].get("write_txn_ms"), 3), "", "", ""),
    ]
    if ratios.get("enqueue_vs_write_txn"):
        rows.append(("  ours/floor enqueue ms", "", fmt(ratios["enqueue_vs_write_txn"], 2), "", "", ""))
    rows += [
        row("drain tasks/s", "drain_tps", 0, raw_ratio="drain"),
        *drain_cost_rows(row, {"drain_cpu_ms": "drain_cpu", "drain_machine_cpu_ms": "drain_machine_cpu"}),
    ]
    if ratios.get("drain_vs_floor"):
        floor_goal = target("drain_floor", f">= {TARGETS['drain_vs_floor']}")
        rows.append(("  ours/floor drain tasks/s", "", fmt(ratios["drain_vs_floor"], 2), "", "", floor_goal))
    for origin, label in LATENCY_ORIGINS.items():
        for key in PERCENTILES:
            goal_text = ""
            if origin == "from_commit" and key in ("p50", "p99"):
                goal_text = target(f"latency_{key}", f"<= {TARGETS[f'latency_{key}_ms']:.0f} ms")
            cells = [fmt(sides[name].get("latency_ms", {}).get(origin, {}).get(key), 1) for name in SIDES]
            rows.append((f"{label} {key} ms", cells[0], "", cells[2], "", goal_text))
    for label, pick in (
        ("peak RSS per pool process MiB", lambda memory: max(child["peak_rss_mib"] for child in memory["pool"])),
        ("PSS per pool process MiB", pool_pss),
        ("peak RSS main process MiB", lambda memory: memory["main"]["peak_rss_mib"]),
    ):
        cells = [f"{pick(sides[name]['memory']):.0f}" if "memory" in sides[name] else "" for name in SIDES]
        rows.append((label, cells[0], "", cells[2], "", ""))
    return rows


def drain_cost_rows(row, raw_ratios=None):
    """Where a drain's CPU went, and what else the machine did meanwhile: the rows under its tasks/s.

    ``raw_ratios``: {measurement: the name of its ours/raw ratio} where the table has one.
    """
    raw_ratios = raw_ratios or {}

    def cost(label, key, digits):
        return row(label, key, digits, **({"raw_ratio": raw_ratios[key]} if key in raw_ratios else {}))

    return [
        cost("  worker CPU ms/task", "drain_cpu_ms", 2),
        cost("  machine CPU ms/task (+ PostgreSQL, broker)", "drain_machine_cpu_ms", 2),
        cost("    of it PostgreSQL ms/task", "drain_postgres_cpu_ms", 2),
        cost("    of it the broker ms/task", "drain_broker_cpu_ms", 2),
        cost("    of the worker's, its main process ms/task", "drain_main_process_cpu_ms", 2),
        cost("  CPU stolen by the hypervisor %", "drain_steal_pct", 1),
        cost("  CPU of other processes % (not the side, PostgreSQL, broker, bench)", "drain_others_cpu_pct", 1),
        cost("  load average (1 min) at the start", "load_1min", 2),
    ]


def queue_job_row(mode, sides, ratios, label, key, digits, target=""):
    """(mode, metric, ours, queue_job, ours/queue_job, target) of one measurement."""
    ratio = ratios.get(f"queue_job_{mode}_{key}")
    cells = [fmt(sides[name].get(key), digits) for name in QUEUE_JOB_SIDES]
    return (mode, label, *cells, fmt(ratio, 2) if ratio else "", target)


def queue_job_rows(part, ratios, met):
    """The part against queue_job: each mode's drain and its costs, the enqueue; the light-load latency.

    The worker of queue_job is its whole Odoo server: main process, HTTP workers, job runner, gevent child.
    """
    rows = []
    for mode, sides in part["modes"].items():
        row = functools.partial(queue_job_row, mode, sides, ratios)
        goal_text = goal(f">= {TARGETS['drain_vs_queue_job']}", met[f"drain_queue_job_{mode}"])
        rows += [
            row(f"drain jobs/s ({part['jobs']} jobs)", "drain_tps", 0, goal_text),
            *drain_cost_rows(row),
            row("  enqueue ms/call (caller, one transaction each)", "enqueue_ms", 3),
        ]
        if "drained_after_last_call_s" in sides["ours"]:
            rows.append(row("  drained after the caller's last call s (0: kept up)", "drained_after_last_call_s", 2))
    for key in PERCENTILES:
        cells = [fmt(part["latency"][name]["latency_ms"]["from_commit"][key], 1) for name in QUEUE_JOB_SIDES]
        ratio = ratios.get(f"queue_job_latency_{key}")
        rows.append(("light load", f"latency from COMMIT {key} ms", *cells, fmt(ratio, 2) if ratio else "", ""))
    return rows


def part_rows(result):
    """(part, metric, value, ratio, target) rows of the parts measured on one broker."""
    ratios, met = result["ratios"], result["targets_met"]
    rows = []
    if "memory_floor" in result:
        memory = result["memory_floor"]
        ours, floor = pool_pss(memory["ours"]), pool_pss(memory["floor"])
        target = goal(f"<= floor + {TARGETS['memory_over_floor_mib']:.0f} MiB", met["memory"])
        peak = [max(child["peak_rss_mib"] for child in memory[name]["pool"]) for name in ("ours", "floor")]
        rows.append(
            ("memory", "peak RSS per pool process MiB: ours / floor worker", f"{peak[0]:.1f} / {peak[1]:.1f}", "", "")
        )
        rows.append(
            (
                "memory",
                "PSS per pool process MiB: ours / floor worker",
                f"{ours:.1f} / {floor:.1f}",
                f"{ours / floor:.2f}x, {ours - floor:+.1f} MiB",
                target,
            )
        )
    if "backlog" in result:
        part = result["backlog"]
        for name, runs in part["series"].items():
            for run in runs:
                measured = []
                if "drain_tps" in run:
                    measured.append(
                        f"{run['drain_tps']:.0f} tasks/s, worker {run['drain_cpu_ms']:.2f} ms/task, "
                        f"machine {run['drain_machine_cpu_ms']:.2f} ms/task"
                    )
                if "relay" in run:
                    measured.append(f"relay round {cost(run['relay'])}")
                rows.append(("backlog", f"{name}: backlog {run['backlog']}", "; ".join(measured), "", ""))
            key = f"backlog_{name}_tps_largest_vs_smallest"
            if key in ratios:
                rows.append(
                    (
                        "backlog",
                        f"{name}: largest / smallest backlog",
                        "tasks/s, worker CPU/task",
                        f"{ratios[key]['median']:.2f}, {ratios[key.replace('tps', 'cpu')]['median']:.2f}",
                        goal(f"within {TARGETS['backlog_flat']:.0%}", met[f"backlog_{name}_flat"])
                        if f"backlog_{name}_flat" in met
                        else "",
                    )
                )
        rows.append(("backlog", "plot", part.get("plot", ""), "", ""))
    if "latency_backlog" in result:
        part = result["latency_backlog"]
        for key in ("p50", "p99"):
            light, loaded = part["light"]["from_commit"][key], part["under_backlog"]["from_commit"][key]
            rows.append(
                (
                    "latency",
                    f"from COMMIT {key} ms: light / under a {part['backlog']} backlog",
                    f"{light:.1f} / {loaded:.1f}",
                    f"{ratios[f'latency_backlog_{key}']['median']:.2f}x",
                    f"backlog left after the probes: {part['left_after_probes']}",
                )
            )
    if "workflows" in result:
        chord, plain = result["workflows"]["chord"], result["workflows"]["plain"]
        target = goal(f">= {TARGETS['chord_drain_ratio']}", met["chord_drain"])
        rows.append(
            (
                "workflows",
                f"drain tasks/s: {result['workflows']['members']} chord members / plain",
                versus(chord, plain, "drain_tps", 0),
                fmt(ratios["chord_drain"], 2),
                target,
            )
        )
        rows.append(
            (
                "workflows",
                "enqueue ms/task, one transaction: chord / plain",
                versus(chord, plain, "enqueue_ms_per_task", 3),
                fmt(ratios["chord_enqueue"], 2),
                "",
            )
        )
        rows.append(
            (
                "workflows",
                "chord callback seen after the last member s",
                fmt(runs_of(chord, "callback_after_drain_s"), 3),
                "",
                "",
            )
        )
    if "unique" in result:
        unique, limits = result["unique"], result["limits"]
        rows.append(
            (
                "unique",
                "enqueue ms/call: unique=True / plain",
                versus(unique["touch_unique"], unique["touch"], "enqueue_ms", 3),
                fmt(ratios["unique_enqueue"], 2),
                "",
            )
        )
        rows.append(
            (
                "limits",
                "drain tasks/s: concurrency=2 / plain (worker -c 2)",
                versus(limits["touch_limited"], limits["touch"], "drain_tps", 0),
                fmt(ratios["limited_drain"], 2),
                f"worker CPU/task {fmt(ratios['limited_drain_cpu'], 2)}x",
            )
        )
    if "options" in result:
        options = result["options"]
        rows.append(
            (
                "options",
                "enqueue ms/call: with_delay(priority=1) / plain",
                versus(options["with_options"], options["plain"], "enqueue_ms", 3),
                fmt(ratios["options_enqueue"], 2),
                "",
            )
        )
    if "scheduled" in result:
        rows += scheduled_rows(result["scheduled"])
    if "metrics" in result:
        rows += metrics_rows(result["metrics"])
    if "exit" in result:
        for number, run in enumerate(result["exit"], 1):
            seconds = ", ".join(
                f"{label} {run.get(key):.3f} s" if run.get(key) is not None else f"{label} never (left to a relay)"
                for key, label in (
                    ("on_broker_s", "on the broker"),
                    ("marked_sent_s", "marked sent"),
                    ("exited_s", "exited"),
                )
            )
            problems = [key for key in ("atexit_after_shutdown", "broker_refused") if run[key]]
            rows.append(
                (
                    "exit",
                    f"run {number}: 5 calls, exit at once; after the last commit",
                    seconds,
                    "",
                    f"exit code {run['exit_code']}; "
                    + (", ".join(problems) + " in its output" if problems else "clean output"),
                )
            )
    return rows


def database_rows(part):
    rows = []
    if "fairness" in part:
        fair = part["fairness"]
        rows.append(
            (
                "databases",
                f"a task of another database, commit -> start s: none waiting / {fair['backlog']} waiting in one",
                f"{fair['quiet_s']['median']:.3f} / {fair['under_backlog_s']['median']:.3f}",
                f"{fair['under_backlog_s']['median'] / fair['quiet_s']['median']:.1f}x",
                f"max {fair['under_backlog_s']['max']:.3f} s; left after the probes: {fair['left_after_probes']}",
            )
        )
    for step in part["steps"]:
        if "skipped" in step:
            rows.append(("databases", f"{step['databases']} served", "skipped", "", step["skipped"]))
            continue
        pool = [child["pss_mib"] for child in step["memory"]["pool"]]
        rows += [
            (
                "databases",
                f"{step['databases']} served: PSS per pool process MiB",
                " / ".join(f"{pss:.0f}" for pss in pool),
                "",
                f"{step['connections']} connections to them",
            ),
            (
                "databases",
                f"{step['databases']} served: first task in a database not loaded s",
                fmt(step["first_task_s"], 2),
                "",
                f"{len(step['first_task_s']['runs'])} new databases",
            ),
            (
                "databases",
                f"{step['databases']} served: relay round (this process)",
                cost(step["relay"]),
                "",
                f"scan {step['scan']['ms']:.1f} ms, {step['scan']['connections']} connections; "
                f"again {step['rescan']['ms']:.1f} ms, {step['rescan']['connections']}",
            ),
            (
                "databases",
                f"{step['databases']} served: worker CPU while idle % of a core",
                f"{step['idle_cpu_pct']:.1f}",
                "",
                "",
            ),
        ]
    return rows


def metrics_rows(part):
    """A drain with a worker's metrics on against off; the gauges' statement and a scrape over a large table."""
    on, off = part["drain"]["metrics_on"], part["drain"]["metrics_off"]
    scrape = part["scrape"]
    table = f"{scrape['finished_rows']} finished, {scrape['waiting']} waiting"
    return [
        (
            "metrics",
            "drain tasks/s: metrics on / off",
            versus(on, off, "drain_tps", 0),
            fmt(paired(runs_of(on, "drain_tps"), runs_of(off, "drain_tps")), 2),
            f"worker CPU/task {fmt(paired(runs_of(on, 'drain_cpu_ms'), runs_of(off, 'drain_cpu_ms')), 2)}x",
        ),
        ("metrics", f"gauges' statement ms ({table})", f"{scrape['statement_ms']:.1f}", "", ""),
        (
            "metrics",
            "scrape ms: read anew / within the cache period",
            f"{scrape['scrape_read_ms']:.1f} / {scrape['scrape_cached_ms']:.1f}",
            "",
            "",
        ),
    ]


def scheduled_rows(part):
    """The worker and its queue with nothing scheduled, then with calls scheduled a day ahead."""
    none, scheduled = part["none"], part["scheduled_day_ahead"]
    label = f"0 / {part['scheduled']} scheduled a day ahead"
    main = [state["memory"]["main"]["pss_mib"] for state in (none, scheduled)]
    pool = [pool_pss(state["memory"]) for state in (none, scheduled)]
    return [
        (
            "scheduled",
            f"{label}: worker PSS MiB, main / pool",
            f"{main[0]:.1f} / {main[1]:.1f}",
            "",
            f"pool {pool[0]:.1f} / {pool[1]:.1f}",
        ),
        (
            "scheduled",
            f"{label}: messages in the worker's queue",
            f"{none['queued_messages']} / {scheduled['queued_messages']}",
            "",
            "",
        ),
        ("scheduled", f"{label}: relay round", f"{cost(none['relay'])} / {cost(scheduled['relay'])}", "", ""),
        (
            "scheduled",
            f"enqueue of {part['scheduled']} scheduled calls s",
            f"{part['enqueue_s']:.1f}",
            "",
            str(part["states"]),
        ),
    ]


def background_rows(part):
    """(part, metric, value, ratio, note) rows of the idle workers' background work and the relay's round."""
    rows = []
    for step in part.get("steps", []):
        workers = f"{step['workers']} idle worker(s)"
        for key, label in (("statements_per_s", "statements/s"), ("postgres_cpu_ms_per_s", "PostgreSQL CPU ms/s")):
            ratio = step.get(f"{key}_vs_one")
            met = goal("16 workers <= 1.5x one:", ratio <= 1.5) if step["workers"] == 16 and ratio else ""
            shown = "" if ratio is None else f"{ratio:.2f}"
            rows.append(("background", f"{workers}: {label}", f"{step[key]:.2f}", shown, met))
        rows.append(("background", f"{workers}: their own CPU ms/s", f"{step['workers_cpu_ms_per_s']:.1f}", "", ""))
    if "relay" in part:
        relay = part["relay"]
        rows.append(("background", f"relay round over {relay['backlog']} waiting", cost(relay["relay"]), "", ""))
    return rows


def render(rows):
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def table(results):
    """Median [min-max] over the runs; the floor is the same ORM write without the addon.

    Enqueue floor: an Odoo transaction writing one field and committing, with no task in it.
    Drain floor: that write as a plain Celery task in the addon's worker.
    """
    main = [("broker", "metric", "ours", "odoo floor", "raw", "ours/raw", "target")]
    against = [("broker", "mode", "metric", "ours", "queue_job", "ours/queue_job", "target")]
    parts = [("broker", "part", "metric", "value", "ratio", "target / note")]
    for broker, result in results.items():
        if broker in OTHER_PARTS:
            parts += [(broker_of(results), *row) for row in OTHER_PARTS[broker](result)]
            continue
        if "ours" in result:
            main += [(broker, *row) for row in main_rows(result)]
        if "queue_job" in result:
            rows = queue_job_rows(result["queue_job"], result["ratios"], result["targets_met"])
            against += [(broker, *row) for row in rows]
        parts += [(broker, *row) for row in part_rows(result)]
    sections = [render(table) for table in (main, against) if len(table) > 1]
    if len(parts) > 1:
        sections.append(render(parts))
    return "\n\n".join(sections)


OTHER_PARTS = {"databases": database_rows, "background": background_rows}


def broker_of(results):
    return next(name for name in results if name not in OTHER_PARTS)

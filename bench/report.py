"""Turns the runs into the report: spreads, paired ratios, the issue's targets, and the printed table."""

import statistics

TARGETS = {"enqueue_ratio": 1.3, "drain_ratio": 0.7, "latency_p50_ms_redis": 10.0}
PERCENTILES = ("p50", "p95", "p99")
LATENCY_ORIGINS = {"from_commit": "latency from COMMIT", "from_return": "latency from commit()"}


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


def verdict(result, broker):
    """Ours/raw (and ours/floor) ratios, and which of the issue's targets their medians meet."""
    ours, floor, raw = result["ours"], result["floor"], result["raw"]
    ratios = {
        "enqueue": paired(ours["enqueue_ms"], raw["noop_enqueue_ms"]),
        "enqueue_cpu": paired(ours["enqueue_cpu_ms"], raw["noop_enqueue_cpu_ms"]),
        "enqueue_published": paired(ours["enqueue_published_ms"], raw["noop_enqueue_ms"]),
        "enqueue_floor": paired(floor["write_txn_ms"], raw["noop_enqueue_ms"]),
        "drain": paired(ours["drain_tps"], raw["drain_tps"]),
        "drain_cpu": paired(ours["drain_cpu_ms"], raw["drain_cpu_ms"]),
        "drain_machine_cpu": paired(ours["drain_machine_cpu_ms"], raw["drain_machine_cpu_ms"]),
        "drain_vs_floor": paired(ours["drain_tps"], floor["drain_tps"]),
    }
    met = {
        "enqueue": ratios["enqueue"]["median"] <= TARGETS["enqueue_ratio"],
        "drain": ratios["drain"]["median"] >= TARGETS["drain_ratio"],
    }
    if broker == "redis":
        met["latency_p50"] = ours["latency_ms"]["from_commit"]["p50"]["median"] <= TARGETS["latency_p50_ms_redis"]
    return {"ratios": ratios, "targets_met": met}


def fmt(values, digits):
    return f"{values['median']:.{digits}f} [{values['min']:.{digits}f}-{values['max']:.{digits}f}]"


def goal(text, met):
    return f"{text} {'met' if met else 'NOT MET'}"


def broker_rows(result):
    """(metric, ours, floor, raw, ours/raw, target) rows of one broker."""
    ours, floor, raw = result["ours"], result["floor"], result["raw"]
    ratios, met = result["ratios"], result["targets_met"]
    rows = [
        (
            "enqueue ms/call (raw: no-op)",
            fmt(ours["enqueue_ms"], 3),
            fmt(floor["write_txn_ms"], 3),
            fmt(raw["noop_enqueue_ms"], 3),
            fmt(ratios["enqueue"], 2),
            goal(f"<= {TARGETS['enqueue_ratio']}", met["enqueue"]),
        ),
        (
            "  caller CPU ms/call",
            fmt(ours["enqueue_cpu_ms"], 3),
            fmt(floor["write_txn_cpu_ms"], 3),
            fmt(raw["noop_enqueue_cpu_ms"], 3),
            fmt(ratios["enqueue_cpu"], 2),
            "",
        ),
        (
            "  until all on the broker ms/call",
            fmt(ours["enqueue_published_ms"], 3),
            "",
            fmt(raw["noop_enqueue_ms"], 3),
            fmt(ratios["enqueue_published"], 2),
            "",
        ),
        ("  raw apply_async(touch) ms/call", "", "", fmt(raw["enqueue_ms"], 3), "", ""),
        (
            "  odoo floor / raw: a write transaction alone",
            "",
            fmt(ratios["enqueue_floor"], 2),
            "",
            "",
            "",
        ),
        (
            "drain tasks/s",
            fmt(ours["drain_tps"], 0),
            fmt(floor["drain_tps"], 0),
            fmt(raw["drain_tps"], 0),
            fmt(ratios["drain"], 2),
            goal(f">= {TARGETS['drain_ratio']}", met["drain"]),
        ),
        (
            "  worker CPU ms/task",
            fmt(ours["drain_cpu_ms"], 2),
            fmt(floor["drain_cpu_ms"], 2),
            fmt(raw["drain_cpu_ms"], 2),
            fmt(ratios["drain_cpu"], 2),
            "",
        ),
        (
            "  machine CPU ms/task (+ PostgreSQL, broker)",
            fmt(ours["drain_machine_cpu_ms"], 2),
            fmt(floor["drain_machine_cpu_ms"], 2),
            fmt(raw["drain_machine_cpu_ms"], 2),
            fmt(ratios["drain_machine_cpu"], 2),
            "",
        ),
        (
            "  CPU stolen by the hypervisor %",
            fmt(ours["drain_steal_pct"], 1),
            fmt(floor["drain_steal_pct"], 1),
            fmt(raw["drain_steal_pct"], 1),
            "",
            "",
        ),
    ]
    for origin, label in LATENCY_ORIGINS.items():
        for key in PERCENTILES:
            target = ""
            if (origin, key) == ("from_commit", "p50") and "latency_p50" in met:
                target = goal(f"<= {TARGETS['latency_p50_ms_redis']} ms", met["latency_p50"])
            values = [fmt(side["latency_ms"][origin][key], 1) for side in (ours, raw)]
            rows.append((f"{label} {key} ms", values[0], "", values[1], "", target))
    for label, pick in (
        ("peak RSS per pool process MiB", lambda memory: max(child["peak_rss_mib"] for child in memory["pool"])),
        ("PSS per pool process MiB", lambda memory: max(child["pss_mib"] for child in memory["pool"])),
        ("peak RSS main process MiB", lambda memory: memory["main"]["peak_rss_mib"]),
    ):
        rows.append((label, f"{pick(ours['memory']):.0f}", "", f"{pick(raw['memory']):.0f}", "", ""))
    return rows


def table(results):
    """Median [min-max] over the runs; the floor is the same ORM write without the addon.

    Enqueue floor: an Odoo transaction writing one field and committing, with no task in it.
    Drain floor: that write as a plain Celery task in the addon's worker.
    """
    rows = [("broker", "metric", "ours", "odoo floor", "raw", "ours/raw", "target")]
    for broker, result in results.items():
        rows += [(broker, *row) for row in broker_rows(result)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)

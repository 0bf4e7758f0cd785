"""Odoo's own test runner plays the UI tours (tests/test_ui_tour.py) in headless Chromium, and tests the
metrics route (tests/test_metrics_route.py) over HTTP.

It runs on a throwaway copy of the test database, so nothing the runner does touches the suite's.
"""

import importlib.util
import json
import re
import shutil

import pytest

import harness

pytestmark = pytest.mark.odoo

REPORT = re.compile(r"celery_task tour saw (\w+): (.*)$", re.MULTILINE)
SUMMARY = re.compile(r"(\d+) failed, (\d+) error\(s\) of (\d+) tests")


def chromium():
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def test_task_list_and_form_in_a_browser(stack, database_copy, record_property):
    assert importlib.util.find_spec("websocket"), "Odoo's browser tests need websocket-client (requirements-test.txt)"
    assert chromium(), "no Chromium: install Debian's chromium package (.ci/run does)"
    log_path = stack.log_dir / "ui-tour.log"
    tags = "/celery_task:TestTaskUiTour,/celery_task:TestMetricsRoute"
    done = harness.run_odoo_tests(stack, database_copy, "celery_task", tags, log_path)
    output = log_path.read_text(errors="replace")
    tail = "\n".join(output.splitlines()[-60:])
    assert done.returncode == 0, tail
    assert SUMMARY.search(output) and SUMMARY.search(output).groups() == ("0", "0", "6"), tail
    from odoo.addons.celery_task.compat import TOUR_SUCCEEDED

    assert output.count(TOUR_SUCCEEDED) >= 3, tail
    seen = {kind: json.loads(payload) for kind, payload in REPORT.findall(output)}
    record_property("browser_saw", json.dumps(seen))
    print(f"browser saw: {json.dumps(seen, indent=1)}")

    rows = {row["state"]: row for row in seen["list"]}
    assert set(rows) >= {"Scheduled", "Pending", "Started", "Done", "Failed"}
    assert all(row["has_progress_bar"] for row in seen["list"])
    assert (rows["Started"]["progress"], rows["Started"]["steps"], rows["Started"]["message"]) == (
        "50%",
        "2 / 4",
        "step 2 of 4",
    )
    assert rows["Done"]["progress"] == "100%" and rows["Pending"]["progress"] == "0%"
    assert seen["form"]["requeue_button"] == "Requeue" and not seen["form"]["cancel_button"]
    assert seen["form"]["progress"] == "25%" and "the remote service said no" in seen["form"]["error"]

    assert seen["reschedule"]["eta"].startswith("01/15/2031"), "a manager moved the scheduled task in its form"

    dashboard = seen["dashboard"]
    assert (dashboard["waiting"], dashboard["running"], dashboard["failed"]) == ("1", "1", "1")
    assert [row[:3] for row in dashboard["queues"]] == [["celery", database_copy, "1"]]
    assert dashboard["workers"] == [["No worker took a task today."]]
    burst = seen["burst"]
    assert 1 <= burst["reloads"] <= 1 + burst["ms"] / 500, f"{burst}: it reloads, at most twice a second"
    assert seen["graph"]["canvas"]
    assert {"Median (s)", "95th Percentile (s)"} <= set(seen["durations"]["headers"])
    assert seen["failures"]["drawn"]

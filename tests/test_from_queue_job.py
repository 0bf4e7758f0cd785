"""The addon written for OCA queue_job and converted line by line (tests/addons/celery_task_from_queue_job,
docs/from-queue-job.md): it runs on a real worker, and its own TransactionCase tests pass with trap_tasks()."""

import datetime
import itertools
import re

import pytest

import harness

pytestmark = pytest.mark.odoo

SUMMARY = re.compile(r"(\d+) failed, (\d+) error\(s\) of (\d+) tests")


def tasks_of(stack, shipment_ids):
    """The task rows of these shipments, oldest first."""
    with stack.env() as env:
        env.cr.execute(
            "SELECT uuid FROM celery_task WHERE model_name = 'example.shipment' AND record_ids::jsonb ->> 0 = ANY(%s)"
            " ORDER BY id",
            [[str(shipment_id) for shipment_id in shipment_ids]],
        )
        return [task_uuid for (task_uuid,) in env.cr.fetchall()]


def test_the_converted_addon_runs_on_a_real_worker(stack, redis):
    with stack.env() as env:
        shipments = env["example.shipment"].create(
            [{"name": "S1"}, {"name": "S2"}, {"name": "S3", "carrier_up": False}]
        )
        shipments.action_book()
        shipments.action_book()  # equal calls while the first ones wait: identity_key, nothing new
        shipments[0].action_book_and_notify()
        ids = shipments.ids
    uuids = tasks_of(stack, ids)
    assert len(uuids) == 5, "three bookings and a workflow of two steps"
    rows = [stack.wait_row(task_uuid, states=("done", "failed", "retry"), timeout=60) for task_uuid in uuids]
    retried = [row for row in rows if row["state"] == "retry"]
    assert len(retried) == 1 and retried[0]["exc_message"] == "the carrier is down"
    assert retried[0]["sent_at"] is None, "retried in 30 s, beyond the horizon: it waits in the database"
    booked = sorted((row["started_at"], row["done_at"]) for row in rows if row["method_name"] == "book_label")
    booked = [run for run in booked if run[1]]
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(booked)), "the carrier's limit: one at once"
    with stack.env() as env:
        env["example.shipment"].browse(ids[2]).carrier_up = True
        env["celery.task"].search([("uuid", "=", retried[0]["uuid"])]).write({"eta": datetime.datetime.utcnow()})
    assert stack.wait_row(retried[0]["uuid"], timeout=30)["state"] == "done", "moved to now: it runs at once"
    with stack.env() as env:
        shipments = env["example.shipment"].browse(ids)
        assert shipments.mapped("label") == ["express-S1", "express-S2", "express-S3"]
        assert shipments.mapped("notified") == [True, False, False]


def test_its_own_transaction_case_tests_pass_with_trap_tasks(stack, database_copy):
    log_path = stack.log_dir / "from-queue-job-tests.log"
    module = "celery_task_from_queue_job"
    done = harness.run_odoo_tests(stack, database_copy, module, f"/{module}", log_path)
    output = log_path.read_text(errors="replace")
    tail = "\n".join(output.splitlines()[-40:])
    assert done.returncode == 0, tail
    assert SUMMARY.search(output) and SUMMARY.search(output).groups() == ("0", "0", "2"), tail

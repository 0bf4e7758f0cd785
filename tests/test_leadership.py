"""Background work once per role: one worker leads, the others wait in the server, and one takes over at once."""

import time

import pytest

import harness

pytestmark = pytest.mark.odoo


def leaders(workers):
    return [worker for worker in workers if "celery_task: this worker now leads" in worker.log()]


def test_one_worker_of_a_role_leads_and_another_takes_over_when_it_dies(stack, fault_worker):
    queue = f"ct-test-{stack.run_id}-lead"
    workers = [fault_worker("redis", name=f"lead-{n}-{stack.run_id}@localhost", queue=queue) for n in range(3)]
    for worker in workers:
        worker.start(stack.app)
    first = harness.wait_for(lambda: leaders(workers), 20, what="a leader")
    time.sleep(2)  # three relay rounds: a second leader would have shown by now
    assert leaders(workers) == first and len(first) == 1, "one leader for the three workers of one role"
    relayed = "stranded task(s) of"
    stack.point_caller(harness.BROKERS["redis"], queue)
    row = stack.unpublished_call("bump", stack.new_item())
    assert stack.wait_row(row["uuid"], timeout=30)["state"] == "done"
    assert [relayed in worker.log() for worker in workers] == [worker is first[0] for worker in workers]
    first[0].kill()
    killed_at = time.monotonic()
    others = [worker for worker in workers if worker is not first[0]]
    second = harness.wait_for(lambda: leaders(others), 10, what="another worker to take the lead")
    took = time.monotonic() - killed_at
    assert len(second) == 1
    row = stack.unpublished_call("bump", stack.new_item())
    assert stack.wait_row(row["uuid"], timeout=30)["state"] == "done", "the new leader relays"
    assert relayed in second[0].log()
    print(f"the lead passed {took:.2f} s after its holder was killed")

"""Async off (the default) or a context key: the same call runs inline and returns its own result."""

import pytest

import harness

pytestmark = pytest.mark.odoo


def test_async_off_runs_inline(stack, monkeypatch):
    monkeypatch.setenv("ODOO_ENABLE_CELERY_TASK", "False")
    item_id = stack.new_item()
    with stack.env() as env:
        before = harness.task_count(env)
        item = env["task.test.item"].browse(item_id)
        assert item.bump(amount=4) == {"ids": [item_id], "values": [4]}
        assert item.value == 4, "it ran in the caller's transaction"
        assert harness.task_count(env) == before, "no task record, no message"


def test_progress_calls_work_inline(stack, monkeypatch):
    monkeypatch.setenv("ODOO_ENABLE_CELERY_TASK", "0")
    with stack.env() as env:
        admin = env.ref("base.user_admin")
        total = admin.voucher_total
        assert admin.present_voucher(amount=3) == total + 3


def test_context_key_forces_inline_per_call(stack):
    item_id = stack.new_item()
    with stack.env() as env:
        before = harness.task_count(env)
        item = env["task.test.item"].browse(item_id).with_context(celery_task_inline=True)
        assert item.bump(amount=2) == {"ids": [item_id], "values": [2]}
        assert harness.task_count(env) == before


def test_inline_errors_reach_the_caller(stack, monkeypatch):
    from odoo.exceptions import UserError

    monkeypatch.setenv("ODOO_ENABLE_CELERY_TASK", "false")
    item_id = stack.new_item()
    with stack.env() as env, pytest.raises(UserError, match="inline failure"):
        env["task.test.item"].browse(item_id).fail("inline failure")

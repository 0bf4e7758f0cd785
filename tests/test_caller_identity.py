"""The worker runs the method as the caller: same user, same access rights, same context."""

import pytest

pytestmark = pytest.mark.odoo


@pytest.fixture
def plain_user(stack):
    """An internal user with read-only access to task.test.item."""
    return stack.new_user("Plain", "base.group_user")


def test_user_without_write_access_gets_access_error_in_worker(stack, redis, plain_user):
    item_id = stack.new_item()
    result = stack.call("write_note", item_id, "from a plain user", uid=plain_user)
    row = stack.wait_row(result.id)
    assert row["state"] == "failed"
    assert row["exc_type"] == "odoo.exceptions.AccessError"
    assert row["user_id"] == plain_user
    with pytest.raises(Exception, match="not allowed to modify"):
        result.get(timeout=10)
    assert stack.item(item_id)["note"] is False


def test_superuser_call_is_not_refused(stack, redis):
    item_id = stack.new_item()
    result = stack.call("write_note", item_id, "from the superuser")
    assert result.get(timeout=30) == "from the superuser"
    assert stack.item(item_id)["note"] == "from the superuser"


def test_admin_user_writes(stack, redis):
    item_id = stack.new_item()
    with stack.env() as env:
        admin = env.ref("base.user_admin").id
    result = stack.call("write_note", item_id, "from admin", uid=admin)
    assert result.get(timeout=30) == "from admin"
    assert stack.task_row(result.id)["user_id"] == admin


def test_sudo_option_runs_as_superuser(stack, redis, plain_user):
    item_id = stack.new_item()
    result = stack.call("write_note_sudo", item_id, "sudo note", uid=plain_user)
    assert result.get(timeout=30) is True
    assert stack.item(item_id)["note"] == "sudo note"


def test_caller_context_reaches_the_method(stack, redis, plain_user):
    item_id = stack.new_item()
    with stack.env() as env:
        company = env.company.id
    context = {"lang": "en_US", "tz": "Asia/Tokyo", "allowed_company_ids": [company], "probe": {"nested": True}}
    result = stack.call("echo", item_id, uid=plain_user, context=context)
    echoed = result.get(timeout=30)
    assert echoed["uid"] == plain_user and echoed["su"] is False
    assert echoed["context"] == {
        "lang": "en_US",
        "tz": "Asia/Tokyo",
        "probe": {"nested": True},
        "allowed_company_ids": [company],
    }

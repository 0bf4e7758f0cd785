"""The three ways to start Celery inside Odoo all give a worker with every decorated task."""

import subprocess
import sys

import pytest

import harness

pytestmark = pytest.mark.odoo


def run_cli(stack, *args, env=None):
    """``python odoo_celery.py -c <test config> *args``, as an operator types it."""
    return subprocess.run(
        [sys.executable, str(harness.REPO / "odoo_celery.py"), "-c", str(stack.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=stack.home.root,
        env=env,
    )


@pytest.mark.parametrize("entry", ["worker_bootstrap.py", "odoo-bin celery"])
def test_other_entry_points_start_a_worker(stack, redis, entry):
    """``python worker_bootstrap.py`` finds its config through ODOO_RC; ``odoo-bin celery`` through -c."""
    command = stack.home.entry_command(entry)
    name = f"entry-{entry.split()[0].replace('.', '-')}-{stack.run_id}@localhost"
    worker = stack.worker("redis", name=name, queue=f"ct-test-{stack.run_id}-entry")
    if entry == "worker_bootstrap.py":
        worker.entry = command
        worker.env["ODOO_RC"] = str(stack.config_path)
    else:
        worker.entry = [*command, "-c", str(stack.config_path)]
    worker.start(stack.app)
    try:
        registered = stack.app.control.inspect(destination=[name], timeout=5).registered()[name]
        assert "task.test.item.bump" in registered
        assert "res.users.present_gift" in registered
    finally:
        worker.stop()


def test_inspect_subcommand_passes_arguments_to_celery(stack, redis):
    done = run_cli(stack, "inspect", "ping", "-d", redis.name, "--timeout", "5", env=redis.env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pong" in done.stdout


def test_databases_neither_named_nor_listable_are_a_clear_startup_error(stack):
    """Without db_name the worker lists the server's databases; with listing forbidden, it must be told."""
    done = run_cli(stack, "-d", "", "--no-database-list", "worker")
    assert done.returncode != 0
    assert "list_db is off and db_name is empty: name the databases to serve" in done.stderr

"""The seed scenario from the installed wheel: decorate, call, a real worker runs it.

    python wheel_seed.py REQUIREMENTS EXAMPLE_ADDONS   # the python of the virtualenv the wheel is in

Run by .ci/wheel_check.sh with the interpreter of a fresh virtualenv that has Odoo and the wheel
and nothing of the checkout: the distribution must be ``odoo-addon-celery_task`` and require what
REQUIREMENTS lists, and Odoo must load ``celery_task`` from it with no addons path entry for it.
EXAMPLE_ADDONS holds the README's example addon, ``celery_task_example``. A new database gets it
installed, a worker is started as the README tells a wheel user (``python -m odoo celery ...``),
one decorated call is committed, and its task record must end ``done`` with its effect written.
Everything made is removed at the end.
"""

import contextlib
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

DISTRIBUTION = "odoo-addon-celery_task"
REF = "run by a worker from the wheel"
ENDED = ("done", "failed", "cancelled")


def check_distribution(requirements_file):
    """The installed distribution's name and requirements; the addon Odoo would import is its own."""
    distribution = importlib.metadata.distribution(DISTRIBUTION)
    lines = Path(requirements_file).read_text().splitlines()
    wanted = {"".join(line.split()) for line in lines if line.strip() and not line.startswith("#")}
    required = {"".join(line.split()) for line in distribution.requires or ()}
    if required != wanted:
        raise SystemExit(f"the wheel requires {sorted(required)}, requirements.txt lists {sorted(wanted)}")
    origin = Path(importlib.util.find_spec("odoo.addons.celery_task").origin).resolve()
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    if site_packages not in origin.parents:
        raise SystemExit(f"odoo.addons.celery_task comes from {origin}, not from the wheel in {site_packages}")
    print(f"{distribution.metadata['Name']} {distribution.version}: requires {', '.join(sorted(required))}")
    print(f"celery_task loads from {origin.parent}")


def write_config(folder, dbname, example_addons, queue):
    import odoo.release

    source_root = Path(odoo.release.__file__).resolve().parent.parent
    addons_path = [str(path) for path in (source_root / "addons", Path(example_addons)) if path.is_dir()]
    config = folder / "odoo.conf"
    config.write_text(
        "\n".join(
            [
                "[options]",
                f"addons_path = {','.join(addons_path)}",
                f"data_dir = {folder / 'data'}",
                f"db_name = {dbname}",
                "without_demo = True",
                "log_level = warn",
                "enable_celery_task = True",
                f"celery_default_queue = {queue}",
            ]
        )
        + "\n"
    )
    return config


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def call_and_wait(config, dbname, worker, log):
    """Commit one decorated call as a caller does; its task record must end done, with its effect."""
    import odoo.tools
    from odoo import api
    from odoo.modules.registry import Registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        odoo.tools.config.parse_config(["-c", str(config)])
    registry = Registry(dbname)
    with registry.cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})
        partner = env["res.partner"].create({"name": "Wheel check"})
        result = partner.stamp_ref(REF)
    print(f"called res.partner({partner.id},).stamp_ref: task {result.id}")

    def ended():
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}:\n{log.read_text()[-4000:]}")
        with registry.cursor() as cr:
            cr.execute(
                "SELECT task.state, task.exc_message, partner.ref FROM celery_task task, res_partner partner"
                " WHERE task.uuid = %s AND partner.id = %s",
                [result.id, partner.id],
            )
            row = cr.fetchone()
        return row if row and row[0] in ENDED else None

    state, error, ref = wait_for(ended, 60, "the task to end")
    print(f"task {result.id}: {state}; partner ref: {ref!r}")
    if state != "done" or ref != REF:
        raise SystemExit(f"the task ended {state} ({error}):\n{log.read_text()[-4000:]}")


def main(requirements_file, example_addons):
    check_distribution(requirements_file)
    dbname = f"ct_wheel_{os.getpid()}"
    queue = f"ct-wheel-{os.getpid()}"
    odoo = [sys.executable, "-m", "odoo"]
    with tempfile.TemporaryDirectory(prefix="ct_wheel_") as folder, contextlib.ExitStack() as cleanup:
        folder = Path(folder)
        config = write_config(folder, dbname, example_addons, queue)
        cleanup.callback(subprocess.run, ["dropdb", "--if-exists", "--force", dbname], check=False)
        install = [*odoo, "-c", str(config), "-d", dbname, "-i", "celery_task_example", "--stop-after-init"]
        with open(folder / "install.log", "w") as install_log:
            if subprocess.run(install, stdout=install_log, stderr=subprocess.STDOUT, cwd=folder).returncode:
                raise SystemExit(f"installing the example failed:\n{(folder / 'install.log').read_text()[-4000:]}")
        print(f"database {dbname}: celery_task_example installed")
        log = folder / "worker.log"
        command = [*odoo, "celery", "-c", str(config), "worker", "-Q", queue, "-c", "1", "-l", "info"]
        with open(log, "w") as worker_log:
            worker = subprocess.Popen(command, stdout=worker_log, stderr=subprocess.STDOUT, cwd=folder)
        cleanup.callback(worker.wait, 30)
        cleanup.callback(worker.send_signal, signal.SIGTERM)
        print(f"worker: {' '.join(['python', *command[1:]])}")
        call_and_wait(config, dbname, worker, log)
        from odoo import sql_db

        sql_db.close_all()


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Start Celery (worker, beat, or any sub-command) inside Odoo.

    python worker_bootstrap.py [-c odoo.conf] [--addons-path=...] worker -Q queue -c 4 -l info

Options before the Celery sub-command are Odoo's (the config file may also come from ODOO_RC);
everything from the sub-command on reaches Celery unchanged. For ``worker`` and ``beat`` the
registry of every served database (``db_name``, comma-separated) is loaded before consuming, so
every decorated method is a registered task; then all connections are closed before the pool forks.
"""

import ast
import contextlib
import glob
import importlib
import logging
import os
import pathlib
import sys
import warnings

ODOO_OPTIONS_WITH_VALUE = {
    "-c",
    "--config",
    "-d",
    "--database",
    "--addons-path",
    "--db_host",
    "--db_port",
    "--db_user",
    "--db_password",
    "--logfile",
    "--log-level",
}
COMMANDS_NEEDING_REGISTRY = {"worker", "beat"}


def split_arguments(argv):
    """Odoo's options come before the first bare word (the Celery sub-command)."""
    odoo_args = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        if not arg.startswith("-"):
            break
        odoo_args.append(arg)
        if arg in ODOO_OPTIONS_WITH_VALUE and position + 1 < len(argv):
            odoo_args.append(argv[position + 1])
            position += 1
        position += 1
    return odoo_args, argv[position:]


def _ensure_addon_importable():
    """Make ``odoo.addons.celery_task`` importable, also when this checkout is named so but not listed."""
    import odoo.addons

    try:
        import odoo.addons.celery_task
    except ImportError:
        here = os.path.dirname(os.path.abspath(__file__))
        if os.path.basename(here) != "celery_task":
            raise SystemExit(
                "celery_task: the addon is not in the Odoo addons_path; add the folder that contains "
                "the 'celery_task' checkout to addons_path (odoo.conf or --addons-path)"
            ) from None
        odoo.addons.__path__.append(os.path.dirname(here))
        import odoo.addons.celery_task


def _load_registries():
    """Named databases: their registries, loaded before the pool forks. Every database: the code only.

    Loading a registry imports its modules, and with them every decorated method; when the
    databases are found on the server, the code of every addon that depends on celery_task is
    imported instead, and each pool process loads a database's registry when a task needs it,
    at most ``celery_registries_per_process`` at once (Odoo's registry LRU).
    """
    from odoo import sql_db
    from odoo.modules.registry import Registry
    from odoo.tools import config as odoo_config

    from odoo.addons.celery_task import config, databases

    named = databases.configured()
    if not named:
        databases.check_discovery_allowed()
        if not odoo_config.get("registry_lru_size"):
            odoo_config["registry_lru_size"] = config.addon_option("registries_per_process")
        for name in sorted(_addons_depending_on("celery_task")):
            importlib.import_module(f"odoo.addons.{name}")
        return []
    for dbname in named:
        registry = Registry(dbname)
        if "celery.task" not in registry:
            raise SystemExit(f"celery_task: the celery_task module is not installed in database {dbname!r}")
    sql_db.close_all()
    return named


def _addons_depending_on(addon):
    """The addons on the addons path that depend on ``addon``, directly or not, from their manifests."""
    import odoo.addons

    depends = {}
    for folder in odoo.addons.__path__:
        for manifest in glob.glob(os.path.join(folder, "*", "__manifest__.py")):
            with contextlib.suppress(OSError, SyntaxError, ValueError):
                name = os.path.basename(os.path.dirname(manifest))
                depends.setdefault(name, ast.literal_eval(pathlib.Path(manifest).read_text()).get("depends", []))
    found, more = set(), {addon}
    while more:
        found |= more
        more = {name for name, needs in depends.items() if found.intersection(needs)} - found
    return found


def parse_odoo_config(odoo_args):
    """Odoo's configuration and logging, as its own server sets them up.

    ``parse_config(args)`` with no other argument means that on every series (18.0 and later also
    warn that it will not always). This runs before the addon can be imported, so before compat.
    """
    from odoo.tools import config  # 19.0's ``odoo`` is a namespace package: import what is used

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        config.parse_config(odoo_args)


def prepare_metrics():
    """A worker with ``celery_metrics_port``: a folder of its own where each of its processes keeps its
    metrics (prometheus_client's multiprocess mode, which is chosen when prometheus_client is imported)."""
    import atexit
    import shutil
    import tempfile

    from odoo.addons.celery_task import config

    if config.addon_option("metrics_port") is None:
        return
    folder = tempfile.mkdtemp(prefix="celery_task_metrics_")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(shutil.rmtree, folder, True)


def main(argv=None):
    odoo_args, celery_args = split_arguments(list(sys.argv[1:] if argv is None else argv))
    parse_odoo_config(odoo_args)
    # Odoo names its level 25 "INFO" too; Celery's ``-l info`` must still mean logging.INFO. kombu
    # keeps its own copy of the names, taken when it was first imported (odoo-bin imports it early).
    from kombu.log import LOG_LEVELS

    logging.addLevelName(logging.INFO, "INFO")
    LOG_LEVELS["INFO"] = logging.INFO
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(celery|kombu|redis)(\.|$)")
    _ensure_addon_importable()
    if celery_args and celery_args[0] == "worker":
        prepare_metrics()
    from odoo.addons.celery_task import worker
    from odoo.addons.celery_task.app import celery_app

    if celery_args and celery_args[0] in COMMANDS_NEEDING_REGISTRY:
        from odoo.addons.celery_task import sessions

        sessions.apply_to_process()  # before the first session: Odoo's cursors carry it too
        _load_registries()
    worker.install(celery_app)
    return celery_app.start(celery_args or ["--help"])


if __name__ == "__main__":
    own_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != own_dir]
    sys.exit(main())

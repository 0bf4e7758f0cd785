"""Small pieces that need no worker: argument splitting, settings, JSON tagging, the decorator's checks."""

import datetime
import decimal
import importlib.util

import pytest

import harness


def load_bootstrap():
    spec = importlib.util.spec_from_file_location("worker_bootstrap_under_test", harness.REPO / "worker_bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "odoo_args", "celery_args"),
    [
        (["worker", "-Q", "q", "-c", "4"], [], ["worker", "-Q", "q", "-c", "4"]),
        (["-c", "odoo.conf", "worker", "-c", "4"], ["-c", "odoo.conf"], ["worker", "-c", "4"]),
        (["--config=o.conf", "-d", "db1,db2", "beat"], ["--config=o.conf", "-d", "db1,db2"], ["beat"]),
        (["--addons-path", "/a,/b", "inspect", "ping"], ["--addons-path", "/a,/b"], ["inspect", "ping"]),
        (["--dev=all", "flower", "--port=5555"], ["--dev=all"], ["flower", "--port=5555"]),
    ],
)
def test_odoo_options_come_before_the_celery_subcommand(argv, odoo_args, celery_args):
    assert load_bootstrap().split_arguments(argv) == (odoo_args, celery_args)


@pytest.mark.odoo
def test_settings_from_config_then_environment(stack, monkeypatch):
    from odoo.tools import config as odoo_config

    from odoo.addons.celery_task import config

    monkeypatch.setitem(odoo_config.options, "celery_worker_prefetch_multiplier", "4")
    monkeypatch.setitem(odoo_config.options, "celery_default_queue", "from-conf")
    monkeypatch.setenv("ODOO_CELERY_DEFAULT_QUEUE", "from-env")
    monkeypatch.setenv("ODOO_CELERY_TASK_ROUTES", '{"a.b": {"queue": "x"}}')
    monkeypatch.setenv("ODOO_CELERY_RELAY_DELAY", "7")
    settings = config.celery_settings()
    assert settings["worker_prefetch_multiplier"] == 4
    assert settings["task_default_queue"] == "from-env"
    assert settings["task_routes"] == {"a.b": {"queue": "x"}}
    assert settings["task_serializer"] == "json" and settings["accept_content"] == ["json"]
    assert "relay_delay" not in settings and config.addon_option("relay_delay") == 7.0


@pytest.mark.odoo
def test_json_tags_round_trip(stack):
    from odoo.addons.celery_task import serialization

    value = {
        "day": datetime.date(2026, 1, 2),
        "at": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "amount": decimal.Decimal("1.10"),
        "nested": [1, "x", None, True, 2.5],
    }
    with stack.env() as env:
        records = env["res.users"].browse([1, 2])
        text = serialization.dumps({**value, "users": records})
        assert "pickle" not in text
        assert serialization.loads(text, env) == {**value, "users": records}


@pytest.mark.odoo
def test_unknown_decorator_option_is_a_type_error_at_import(stack):
    from odoo.addons.celery_task import celeryTask

    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        celeryTask(model="res.partner", retries=3)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'model'"):
        celeryTask(name="x")


@pytest.mark.odoo
def test_two_methods_cannot_share_a_task_name(stack):
    from odoo.addons.celery_task import celeryTask

    def first(self):
        return None

    def second(self):
        return None

    celeryTask(model="res.partner", name="units_only_once")(first)
    with pytest.raises(TypeError, match=r"already used by res\.partner\.first"):
        celeryTask(model="res.partner", name="units_only_once")(second)


CALLER_SIDE = {"celery_task", "canvas", "outbox", "publisher"}


def addon_imports():
    """{module: the addon's modules it imports}, read from the sources (relative imports only)."""
    import ast

    found = {}
    for path in harness.REPO.glob("**/*.py"):
        relative = path.relative_to(harness.REPO)
        if relative.parts[0] in ("tests", "bench", "docs") or (path.name == "__init__.py" and len(relative.parts) == 1):
            continue
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        package = name.rsplit(".", 1)[0] if "." in name else ""
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = [part for part in base if part]
                target = ".".join([*base, node.module] if node.module else base)
                imported |= {f"{target}.{alias.name}".strip(".") for alias in node.names} | {target}
        found[name] = {module for module in imported if module}
    return found


def test_the_caller_side_and_the_worker_import_only_the_shared_contract_of_each_other():
    imports = addon_imports()
    for module, imported in imports.items():
        if module in CALLER_SIDE:
            assert not any(name.startswith("worker") for name in imported), f"{module} imports the worker"
        if module.startswith("worker"):
            assert not imported & CALLER_SIDE, f"{module} imports the caller's side: {imported & CALLER_SIDE}"


def test_the_addons_modules_import_each_other_without_a_cycle():
    imports = addon_imports()
    modules = set(imports)
    graph = {
        module: {name for name in imported if name in modules and name != module}
        for module, imported in imports.items()
    }
    visiting, done = set(), set()

    def visit(module, path):
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join([*path, module])}"
        visiting.add(module)
        for name in graph[module]:
            visit(name, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])

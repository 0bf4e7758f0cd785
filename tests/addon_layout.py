"""Pytest plugin (``-p addon_layout``): keep pytest from importing the Odoo addon this checkout is.

The repository root is an Odoo addon and ``tests/`` its Odoo test package; Odoo imports them as
``odoo.addons.celery_task[.tests]`` and refuses models imported under any other name. Pytest
would import both under the checkout's folder name before any conftest runs, so both are
registered here as empty packages first. The Odoo test modules that ``tests/__init__.py``
imports run under Odoo's own test runner (see test_ui_browser.py), not under pytest.
"""

import ast
import contextlib
import sys
import types
from pathlib import Path

from _pytest.pathlib import CouldNotResolvePathError, module_name_from_path, resolve_pkg_root_and_module_name

TESTS = Path(__file__).resolve().parent


def _names_pytest_gives(init_file):
    """Every name pytest's importlib mode may import ``init_file`` under, whatever the folder is called."""
    names = {module_name_from_path(init_file, TESTS.parent)}
    with contextlib.suppress(CouldNotResolvePathError):
        names.add(resolve_pkg_root_and_module_name(init_file)[1])
    return names


def _stand_in_packages():
    """Register empty packages under those names for the addon root and its ``tests`` folder."""
    for folder in (TESTS.parent, TESTS):
        for name in _names_pytest_gives(folder / "__init__.py"):
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules.setdefault(name, package)


def _odoo_test_modules():
    """The file names of the modules ``tests/__init__.py`` imports for Odoo's runner."""
    tree = ast.parse((TESTS / "__init__.py").read_text())
    return {f"{alias.name}.py" for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}


_stand_in_packages()


def pytest_ignore_collect(collection_path, config):
    if collection_path.parent == TESTS and collection_path.name in _odoo_test_modules():
        return True
    if collection_path == TESTS / "addons":  # the test addons' own tests run under Odoo's runner
        return True
    return None

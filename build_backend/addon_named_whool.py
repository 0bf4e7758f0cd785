"""The PEP 517 build backend of this repository: whool, given the checkout under the addon's own name.

whool (OCA's backend for Odoo addons) names the distribution after the folder it builds,
``odoo-addon-<folder>``, and installs the code as ``odoo/addons/<folder>``. This repository is the
addon, so a clone called anything but ``celery_task`` (``pip install git+URL`` clones into a
temporary folder) would make a package Odoo loads under the wrong name. Each hook here runs
whool's own on a copy of the files whool would take (those git tracks, or every file outside git)
in a folder named ``celery_task``. An sdist already names itself in its PKG-INFO: whool builds it
where it is.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from whool import buildapi

ADDON = "celery_task"


def _tracked_files(source):
    """The files git tracks under ``source``, or None when ``source`` is not in a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=source, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [name for name in listed.decode().split("\0") if name]


def _copy_sources(source, target):
    """Into ``target``, what whool would take from ``source``, staged in a new git repository.

    From a git checkout, the files git tracks, as they are in the working tree; from elsewhere
    (an unpacked archive), every file. Staged, whool lists them with git as it would in a
    checkout, instead of complaining that there is none.
    """
    tracked = _tracked_files(source)
    if tracked is None:
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        for name in tracked:
            if (source / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, target / name)
    with contextlib.suppress(OSError):
        for command in (["init", "-q"], ["add", "-A", "-f"]):
            subprocess.run(["git", *command], cwd=target, check=True)


@contextlib.contextmanager
def _as_addon():
    """The working directory is the checkout under the addon's name while whool runs."""
    source = Path.cwd()
    if (source / "PKG-INFO").is_file():
        yield
        return
    with tempfile.TemporaryDirectory() as workdir:
        addon = Path(workdir) / ADDON
        addon.mkdir()
        _copy_sources(source, addon)
        os.chdir(addon)
        try:
            yield
        finally:
            os.chdir(source)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel_directory = os.path.abspath(wheel_directory)
    with _as_addon():
        return buildapi.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    sdist_directory = os.path.abspath(sdist_directory)
    with _as_addon():
        return buildapi.build_sdist(sdist_directory, config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    metadata_directory = os.path.abspath(metadata_directory)
    with _as_addon():
        return buildapi.prepare_metadata_for_build_wheel(metadata_directory, config_settings)

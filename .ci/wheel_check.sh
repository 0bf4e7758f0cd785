#!/usr/bin/env bash
# The wheel as a user gets it, for one installed Odoo series:
#
#   .ci/wheel_check.sh SERIES PYTHON SOURCES
#
# PYTHON: the series' virtualenv python (what install.sh printed); SOURCES: the folder of install.sh
# and the Odoo tarballs (../shared/odoo).
#
# 1. Builds the wheel with pip from the files git tracks, as they are in the working tree, copied
#    into a folder not named celery_task: as `pip install git+URL` builds in a pip-req-build-*
#    folder, the name must come from the addon, not from the folder.
# 2. Makes a fresh virtualenv with Odoo SERIES by the project's own installer (install.sh, into a
#    folder of its own, from the interpreter PYTHON's virtualenv was made from), so nothing of this
#    checkout or of the tests' packages is in it, and installs the wheel there.
# 3. Runs the seed scenario from the installed wheel (.ci/wheel_seed.py).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: wheel_check.sh SERIES PYTHON SOURCES"
series=${1:?$usage} python=${2:?$usage} sources=${3:?$usage}

work=$(mktemp -d /tmp/ct_wheel_check.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir "$work/checkout"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/checkout"
"$python" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$work/dist" "$work/checkout"
wheel=$(ls "$work"/dist/*.whl)
echo "built $(basename "$wheel") in a folder named $(basename "$work/checkout")"
case $(basename "$wheel") in
    odoo_addon_celery_task-*) ;;
    *) echo "the wheel is not named odoo-addon-celery_task" >&2; exit 1 ;;
esac

base_python=$("$python" -c 'import sys; print(sys._base_executable)')
venv_python=$(ODOO_PYTHON_BIN="$base_python" "$sources/install.sh" "$series" "$work/odoo" 2>"$work/install.log" | tail -n 1) \
    || { cat "$work/install.log" >&2; exit 1; }
"$venv_python" -m pip install -q --disable-pip-version-check "$wheel" -c "$work/odoo/src/requirements.txt"
"$venv_python" -c "import odoo.release, sys; print('fresh virtualenv: Odoo', odoo.release.version, 'with Python', sys.version.split()[0])"

"$venv_python" .ci/wheel_seed.py "$PWD/requirements.txt" "$PWD/tests/addons"

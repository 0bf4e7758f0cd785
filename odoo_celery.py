"""``python odoo_celery.py [odoo options] worker -Q queue ...``: see worker_bootstrap.py."""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_bootstrap.py"), run_name="__main__")

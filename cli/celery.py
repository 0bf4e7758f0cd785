"""``odoo-bin --addons-path=... celery [-c odoo.conf] worker -Q queue ...``."""

import sys

from odoo.cli import Command


class Celery(Command):
    """Run a Celery worker, beat, or any celery sub-command with the Odoo registry loaded"""

    name = "celery"

    def run(self, args):
        # Absolute: 19.0 loads this file as odoo.cli.celery, outside the addon's package.
        from odoo.addons.celery_task.worker_bootstrap import main

        sys.exit(main(args))

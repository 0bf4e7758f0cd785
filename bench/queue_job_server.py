"""``odoo-bin`` for the queue_job side's server (``python queue_job_server.py -c queue_job.conf``).

A prefork Odoo server starts its long-polling process as ``<its argv[0]> gevent``. That process
serves only the web client's bus (nothing queue_job uses), and it cannot start in this virtualenv:
gevent's plugins fail in pkg_resources on ``zope.interface``, and the server would start it again
and again. Started through this file, it waits idle instead; everything else is ``odoo-bin``.
"""

import os
import signal
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["gevent"]:
        signal.pause()
    else:
        os.environ["TZ"] = "UTC"  # as odoo-bin, before anything imports time
        import odoo

        odoo.cli.main()

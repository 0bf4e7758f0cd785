"""Take the screenshots: the task list and the dashboard, in a real browser, with real tasks; and the Apps page.

    python docs/screenshots.py

writes static/description/tasks.png and dashboard.png (the Apps page and docs/ui.md show them),
then, for the Apps store and menu, docs/screenshots/apps.png (the Apps menu searched for the
module) and apps-module.png (the module's page there, which shows static/description/index.html
with those two images). Needs what the tests need (see
docs/testing.md), Chromium included. It makes a database from the tests' template, starts an
Odoo server and a worker on it, calls a few decorated methods (done, failed, running, waiting in
a workflow), logs in as admin through Chrome's DevTools protocol and captures the pages; then it
removes everything it made.
"""

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import websocket

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import harness  # noqa: E402 - the tests' real parts, found next to this folder

OUT = HERE / "screenshots"
DESCRIPTION = HERE.parent / "static" / "description"
SIZE = (1440, 860)
#: The module's page in the Apps menu is taller: its description holds both screenshots.
MODULE_PAGE_HEIGHT = 3300


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, evaluate, capture."""

    def __init__(self, workdir):
        self.port = harness.free_port()
        chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))))
        self.process = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={workdir}",
                f"--window-size={SIZE[0]},{SIZE[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pages = harness.wait_for(self._pages, 30, what="Chromium's DevTools")
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60)
        self.ids = iter(range(1, 10**6))

    def _pages(self):
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=2) as response,
        ):
            return [page for page in json.load(response) if page["type"] == "page"]
        return None

    def call(self, method, **params):
        request_id = next(self.ids)
        self.socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        return self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)

    def open(self, url, ready, timeout=30):
        """Go to ``url``, then wait until the CSS selector ``ready`` matches."""
        self.call("Page.navigate", url=url)
        self.wait_until(f"Boolean(document.querySelector({json.dumps(ready)}))", f"{ready} on {url}", timeout)

    def wait_until(self, expression, what, timeout=30):
        """Until the JavaScript ``expression`` is true in the page."""
        harness.wait_for(lambda: self.evaluate(expression)["result"].get("value"), timeout, 0.2, what)

    def resize(self, width, height):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def capture(self, path, without_notices=False):
        if without_notices:
            self.evaluate("document.querySelectorAll('.o_notification_close').forEach((button) => button.click())")
        time.sleep(1.0)  # let the last rendering settle
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"wrote {path}")

    def close(self):
        self.socket.close()
        self.process.terminate()
        self.process.wait(10)


def populate(registry):
    """A few tasks in every state a user meets: done, failed, running with progress, waiting."""
    from odoo import api

    from odoo.addons.celery_task import app, chain, signature

    with registry.cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})
        items = env["task.test.item"].create([{"name": f"Order {n}"} for n in range(1, 9)])
        admin = env.ref("base.user_admin").id
        for item in items[:4]:
            item.with_user(admin).bump(amount=3)
        items[4].with_user(admin).fail("the carrier's API answered 503")
        items[5].with_user(admin).report_progress(steps=20, pause=3)
        chain(
            signature(items[6].with_user(admin).slow_bump, 120.0, immutable=True),
            signature(items[7].with_user(admin).add, 1, immutable=True),
        ).delay()
    default_queue = app.celery_app.conf.task_default_queue
    app.celery_app.conf.task_default_queue = "reports"  # a queue no worker reads here: these wait
    with registry.cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})
        for item in env["task.test.item"].create([{"name": f"Report {n}"} for n in range(3)]):
            item.with_user(env.ref("base.user_admin").id).bump()
    app.celery_app.conf.task_default_queue = default_queue


def main():
    odoo, missing = harness.find_odoo()
    if missing:
        raise SystemExit(missing)
    OUT.mkdir(exist_ok=True)
    home = harness.OdooHome(odoo)
    dbname = f"ct_shots_{os.getpid()}"
    queue = f"ct-shots-{os.getpid()}"
    http_port = harness.free_port()
    config = home.write_config(
        "odoo.conf",
        [dbname],
        enable_celery_task="True",
        celery_broker_url=harness.BROKERS["redis"],
        celery_default_queue=queue,
        http_port=str(http_port),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        odoo.tools.config.parse_config(["-c", str(config)])
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(home.cleanup)
        workdir = Path(tempfile.mkdtemp(prefix="ct_shots_"))
        cleanup.callback(shutil.rmtree, workdir, True)
        harness.create_database(config, dbname, "celery_task_test", workdir / "install.log")
        cleanup.callback(harness.drop_database, dbname)
        server = subprocess.Popen(
            [sys.executable, "-m", "odoo", "-c", str(config), "-d", dbname, "--workers=0"],
            stdout=open(workdir / "server.log", "w"),  # noqa: SIM115 - the server writes to it while it runs
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        cleanup.callback(server.terminate)
        from odoo.modules.registry import Registry

        from odoo.addons.celery_task import app

        worker = harness.Worker(config, f"shots-{os.getpid()}@localhost", queue, workdir / "worker.log").start(
            app.celery_app
        )
        cleanup.callback(worker.kill)
        populate(Registry(dbname))
        harness.wait_for(lambda: harness.port_open("127.0.0.1", http_port), 60, what="the Odoo server")
        time.sleep(4)  # the quick tasks end, the slow ones run
        browser = Browser(workdir / "chromium")
        cleanup.callback(browser.close)
        base = f"http://127.0.0.1:{http_port}"
        browser.open(f"{base}/web/login", "form.oe_login_form")
        browser.evaluate(
            "document.querySelector('#login').value = 'admin';"
            "document.querySelector('#password').value = 'admin';"
            "document.querySelector('form.oe_login_form').submit();"
        )
        time.sleep(2)
        browser.open(f"{base}/web#action=celery_task.action_celery_task", ".o_list_view tr.o_data_row")
        browser.capture(DESCRIPTION / "tasks.png", without_notices=True)
        browser.open(f"{base}/web#action=celery_task.action_celery_dashboard", ".o_celery_dashboard .o_celery_kpis")
        browser.capture(DESCRIPTION / "dashboard.png", without_notices=True)
        capture_apps_page(browser, base, Registry(dbname))


def capture_apps_page(browser, base, registry):
    """The Apps menu searched for the module, then the module's page: static/description/index.html."""
    from odoo import api

    with registry.cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})
        module_id = env["ir.module.module"].search([("name", "=", "celery_task")]).id
    apps = f"{base}/web#action=base.open_module_tree"
    browser.open(apps, ".o_kanban_view .o_kanban_record")
    browser.evaluate(
        "const input = document.querySelector('.o_searchview_input'); input.value = 'Celery Task';"
        " input.dispatchEvent(new Event('input', {bubbles: true}));"
        " input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));"
    )
    browser.wait_until(
        "document.querySelectorAll('.o_kanban_record:not(.o_kanban_ghost)').length === 1", "the module alone"
    )
    browser.capture(OUT / "apps.png", without_notices=True)
    browser.resize(SIZE[0], MODULE_PAGE_HEIGHT)
    browser.open(f"{apps}&model=ir.module.module&id={module_id}&view_type=form", ".o_module_form .oe_styling_v8 img")
    browser.wait_until(
        "[...document.querySelectorAll('.oe_styling_v8 img')].every((image) => image.complete)", "images"
    )
    browser.capture(OUT / "apps-module.png", without_notices=True)
    browser.resize(*SIZE)


if __name__ == "__main__":
    main()

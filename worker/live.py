"""What the Odoo web clients see while tasks run: live updates and grouped notices, from the main process.

Every ``celery_live_interval`` seconds (0.5), for each database this worker ran or finished tasks of
since the last round, or is running tasks of: one ``celery_task.changed`` notification on the bus
channel ``celery_task.live``. Web clients showing tasks, workflows, limits or the dashboard reload
it, at most twice a second (static/src/celery_task_live.js). It carries no task data: the reload
reads through the user's access rules.

Every ``celery_notice_interval`` seconds (2), the outcomes not yet told (``notice_pending``, set by
the statements that record done and failed, in the worker's pool or here) become one notice per
user: "12 done, 3 failed", with a button to the tasks; a workflow's steps become one notice once
the whole workflow finished. Each user chooses in their preferences: all notices, failures only,
or none. A notice is sent once, by whichever worker takes its rows first (``SKIP LOCKED``).
"""

import collections
import logging
import time

from celery import bootsteps
from celery.worker import state as worker_state

from .. import compat, config, databases, task_record
from .connections import main_process_cursor

_logger = logging.getLogger(__name__)

LIVE_CHANNEL = "celery_task.live"
NOTICES_PER_ROUND = 5000
FAILURES_SHOWN = 3
SWEEP_SECONDS = 60.0

_active = set()  # databases with tasks taken by a pool process since the last round
_running = set()  # databases with tasks running at the last round: one that ended since has news


def touch(dbname):
    """A task of ``dbname`` started, or was recorded failed, in this worker: its web clients have news."""
    _active.add(dbname)


def _running_databases():
    found = set()
    for request in list(worker_state.active_requests):
        args = request.args
        if isinstance(args, (list, tuple)) and args and isinstance(args[0], str):
            found.add(args[0])
    return found


def broadcast_changes():
    """One live notification per database with news; returns those databases."""
    running = _running_databases()
    changed = (_active | running | _running) & set(databases.served())
    _active.clear()
    _running.clear()
    _running.update(running)
    channels = []
    for dbname in sorted(changed):
        try:
            with main_process_cursor(dbname) as cr:
                compat.insert_bus_notification(cr, [dbname, LIVE_CHANNEL], "celery_task.changed", {})
            channels.append([dbname, LIVE_CHANNEL])
        except Exception:
            _logger.warning("celery_task: could not send live updates to the web clients of %s", dbname, exc_info=True)
    _notify_bus(channels)
    return changed


def _notify_bus(channels):
    if channels:
        with main_process_cursor(compat.BUS_DATABASE) as cr:
            compat.notify_bus(cr, channels)


def send_notices(dbname):
    """Tell the owners of ``dbname``'s told-nothing-yet outcomes, grouped; returns how many notices went out."""
    with main_process_cursor(dbname) as cr:
        cr.execute(task_record.PENDING_NOTICES, {"limit": NOTICES_PER_ROUND})
        rows = cr.fetchall()
        if not rows:
            return 0
        notices = [notice for notice in _notices(rows) if notice["partner_id"]]
        for notice in notices:
            compat.insert_bus_notification(
                cr, [dbname, "res.partner", notice.pop("partner_id")], "celery_task.summary", notice
            )
        cr.execute(task_record.NOTICES_SENT, {"ids": [row["id"] for row in rows]})
    _notify_bus(sorted({(dbname, "res.partner", row["partner_id"]) for row in rows if row["partner_id"]}))
    return len(notices)


def _notices(rows):
    """One notice per user and workflow (or per user, for tasks outside workflows), as each user wants them."""
    groups = collections.defaultdict(list)
    for row in rows:
        if not row["user_active"] or row["wants"] == "none":
            continue
        if row["wants"] == "failures" and row["state"] != task_record.FAILED:
            continue
        groups[(row["partner_id"], row["workflow_root_id"])].append(row)
    for (partner_id, workflow_id), tasks in groups.items():
        yield {"partner_id": partner_id, **_notice(tasks, workflow_id)}


def _notice(tasks, workflow_id):
    failed = [task for task in tasks if task["state"] == task_record.FAILED]
    done = len(tasks) - len(failed)
    if workflow_id:
        title = f"Workflow {'failed' if failed else 'finished'}: {tasks[0]['workflow_name']}"[:200]
    elif len(tasks) == 1:
        title = "Background task failed" if failed else "Background task finished"
    else:
        title = "Background tasks"
    counts = ", ".join(part for part in (done and f"{done} done", failed and f"{len(failed)} failed") if part)
    lines = [f"{task['call_repr'] or task['name']}: {task['exc_message'] or ''}" for task in failed[:FAILURES_SHOWN]]
    if len(tasks) == 1:
        message = lines[0] if failed else tasks[0]["call_repr"] or tasks[0]["name"]
    else:
        message = "; ".join([counts, *lines]) + ("; ..." if len(failed) > FAILURES_SHOWN else "")
    return {
        "title": title,
        "message": message[:500],
        "type": "danger" if failed else "success",
        "sticky": bool(failed),
        "task_ids": [task["id"] for task in tasks],
    }


class LiveUpdates(bootsteps.StartStopStep):
    """Consumer bootstep: live updates every ``celery_live_interval`` s, notices every ``celery_notice_interval`` s.

    Notices go for the databases with news since the last notices, and once a minute for all of
    them: outcomes recorded while no worker of theirs ran (a worker restarted, say) are told too.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.timers = []
        self.notices_due = 0.0
        self.sweep_due = 0.0
        self.notice_databases = set()

    def start(self, consumer):
        live, notices = config.addon_option("live_interval"), config.addon_option("notice_interval")
        if live > 0:
            self.timers.append(consumer.timer.call_repeatedly(live, self.live_round, (notices,), priority=10))

    def live_round(self, notice_interval):
        try:
            self.notice_databases |= broadcast_changes()
        except Exception:
            _logger.exception("celery_task: live updates failed")
        if notice_interval <= 0 or time.monotonic() < self.notices_due:
            return
        self.notices_due = time.monotonic() + notice_interval
        if time.monotonic() >= self.sweep_due:
            self.sweep_due = time.monotonic() + SWEEP_SECONDS
            self.notice_databases |= set(databases.served())
        for dbname in sorted(self.notice_databases):
            try:
                send_notices(dbname)
            except Exception as exc:
                if not databases.forget_if_uninstalled(dbname, exc):
                    _logger.exception("celery_task: notices failed for %s", dbname)
        self.notice_databases.clear()

    def stop(self, consumer):
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    shutdown = stop

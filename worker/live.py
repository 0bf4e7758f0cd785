"""What the Odoo web clients see while tasks run: live updates and grouped notices, from the main process.

Every ``celery_live_interval`` seconds (0.5), each worker tells the others which databases it ran or
finished tasks of since its last round, or is running tasks of (:func:`own_news`, a NOTIFY in
``postgres``: worker/listener.py), and the worker holding the housekeeping of those databases sends
one ``celery_task.changed`` notification per database with news on the bus channel
``celery_task.live``: one per database and interval, however many workers. Web clients showing
tasks, workflows, limits or the dashboard reload it, at most twice a second
(static/src/celery_task_live.js). It carries no task data: the reload reads through the user's
access rules.

Every ``celery_notice_interval`` seconds (2), the housekeeping worker turns the outcomes not yet told
(``notice_pending``, set by the statements that record done and failed, in the worker's pool or
main process) into one notice per user: "12 done, 3 failed", with a button to the tasks; a
workflow's steps become one notice once the whole workflow finished. Each user chooses in their
preferences: all notices, failures only, or none. A notice is sent once, by whichever worker takes
its rows first (``SKIP LOCKED``).

Everything here runs in the main process's background thread (worker/background.py), except
:func:`touch`, which Celery's event loop calls.
"""

import collections
import logging
import threading

from .. import compat, task_record
from .connections import main_process_cursor

_logger = logging.getLogger(__name__)

LIVE_CHANNEL = "celery_task.live"
NEWS_CHANNEL = "celery_task_news"  # between workers, in postgres: the databases with news
NOTICES_PER_ROUND = 5000
FAILURES_SHOWN = 3
SWEEP_SECONDS = 60.0

_touched = set()  # databases of tasks taken by a pool process, or failed by the main process, since the last round
_touched_lock = threading.Lock()
_running = set()  # databases with tasks running at the last round: one that ended since has news


def touch(dbname):
    """A task of ``dbname`` started, or was recorded failed, in this worker: its web clients have news."""
    with _touched_lock:
        _touched.add(dbname)


def own_news(running):
    """The databases this worker has news of since its last round; ``running``: the databases of its running tasks."""
    with _touched_lock:
        touched = set(_touched)
        _touched.clear()
    news = touched | running | _running
    _running.clear()
    _running.update(running)
    return news


def send_live_updates(dbnames, listener):
    """One live notification for each of ``dbnames``; returns those that went out."""
    channels = []
    for dbname in sorted(dbnames):
        try:
            with main_process_cursor(dbname) as cr:
                compat.insert_bus_notification(cr, [dbname, LIVE_CHANNEL], "celery_task.changed", {})
            channels.append([dbname, LIVE_CHANNEL])
        except Exception:
            _logger.warning("celery_task: could not send live updates to the web clients of %s", dbname, exc_info=True)
    _notify_bus(listener, channels)
    return {dbname for dbname, _ in channels}


def _notify_bus(listener, channels):
    if channels:
        with listener.cursor() as cr:
            compat.notify_bus(cr, channels)


def send_notices(dbname, listener):
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
    _notify_bus(listener, sorted({(dbname, "res.partner", row["partner_id"]) for row in rows if row["partner_id"]}))
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

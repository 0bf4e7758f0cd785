/** @odoo-module */
/* Live views and grouped notices for background tasks (worker/live.py sends both over the bus).
 *
 * celery_task.changed: reload the task, workflow or limit view, or the dashboard, being shown;
 * at most one reload per RELOAD_INTERVAL, however many changes arrive. celery_task.summary: one
 * notice for many outcomes, with a button to the tasks it is about. */

import { registry } from "@web/core/registry";

const LIVE_CHANNEL = "celery_task.live";
const RELOAD_INTERVAL = 500; // ms: a browser reloads a live view at most twice a second
const LIVE_MODELS = new Set(["celery.task", "celery.workflow", "celery.task.limit"]);
const DASHBOARD = "celery_task.dashboard";

export const celeryTaskLiveService = {
    dependencies: ["bus_service", "action", "notification"],

    start(env, { bus_service: bus, action, notification }) {
        const live = { reloads: 0, pending: null, last: 0 };

        function showsTasks() {
            const controller = action.currentController;
            const shown = controller && controller.action;
            return Boolean(shown && (LIVE_MODELS.has(shown.res_model) || shown.tag === DASHBOARD));
        }

        function reload() {
            live.pending = null;
            live.last = Date.now();
            const controller = action.currentController;
            if (controller && showsTasks()) {
                live.reloads++;
                action.restore(controller.jsId);
            }
        }

        live.changed = () => {
            if (!showsTasks() || live.pending) {
                return;
            }
            live.pending = setTimeout(reload, Math.max(0, live.last + RELOAD_INTERVAL - Date.now()));
        };

        live.summary = (notice) => {
            notification.add(notice.message, {
                title: notice.title,
                type: notice.type,
                sticky: notice.sticky,
                buttons: [
                    {
                        name: notice.task_ids.length > 1 ? "Open the tasks" : "Open the task",
                        onClick: () =>
                            action.doAction({
                                type: "ir.actions.act_window",
                                name: notice.title,
                                res_model: "celery.task",
                                views: [
                                    [false, "list"],
                                    [false, "form"],
                                ],
                                domain: [["id", "in", notice.task_ids]],
                            }),
                    },
                ],
            });
        };

        bus.subscribe("celery_task.changed", () => live.changed());
        bus.subscribe("celery_task.summary", (notice) => live.summary(notice));
        bus.addChannel(LIVE_CHANNEL);
        return live;
    },
};

registry.category("services").add("celery_task_live", celeryTaskLiveService);

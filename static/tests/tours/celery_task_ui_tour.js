/** @odoo-module */
/* The task list and a failed task's form as a Celery manager sees them (tests/test_ui_tour.py). */

import { registry } from "@web/core/registry";
import { session } from "@web/session";

const REPORT = "celery_task tour saw";
const TOUR_TASKS = "res.partner.tour_";

function cellText(row, name) {
    return row.querySelector(`td[name="${name}"]`)?.textContent.replace(/\s+/g, " ").trim() || "";
}

registry.category("web_tour.tours").add("celery_task_ui_tour", {
    // 17.0 marks test tours (else it offers them to new users); 18.0 and later refuse the key.
    ...(session.server_version_info[0] < 18 ? { test: true } : {}),
    steps: () => [
        {
            content: "The task list shows the running task's progress bar",
            trigger: ".o_list_view tr.o_data_row td[name=progress_percent] .o_progressbar",
            run() {}, // only wait for it: a step without run clicks its trigger on 17.0
        },
        {
            content: "Report the states and progress the list shows",
            trigger: `.o_list_view tr.o_data_row td[name=name]:contains(${TOUR_TASKS}failed)`,
            run() {
                const rows = [...document.querySelectorAll(".o_list_view tr.o_data_row")];
                const seen = rows.filter((row) => cellText(row, "name").startsWith(TOUR_TASKS)).map((row) => ({
                    name: cellText(row, "name"),
                    state: cellText(row, "state"),
                    progress: cellText(row, "progress_percent"),
                    steps: cellText(row, "progress_label"),
                    message: cellText(row, "progress_message"),
                    has_progress_bar: Boolean(row.querySelector("td[name=progress_percent] .o_progressbar")),
                }));
                console.log(`${REPORT} list: ${JSON.stringify(seen)}`);
            },
        },
        {
            content: "Open the failed task",
            trigger: `.o_list_view tr.o_data_row td[name=name]:contains(${TOUR_TASKS}failed)`,
            run: "click",
        },
        {
            content: "The failed task's form has the Requeue button, its progress bar and its error",
            trigger: ".o_form_view:has(.o_form_statusbar button[name=action_requeue]):has(.o_field_progressbar)",
            run() {
                const form = document.querySelector(".o_form_view");
                const text = (selector) => form.querySelector(selector)?.textContent.replace(/\s+/g, " ").trim();
                const report = {
                    title: text(".oe_title h1"),
                    requeue_button: text(".o_form_statusbar button[name=action_requeue]"),
                    cancel_button: Boolean(form.querySelector(".o_form_statusbar button[name=action_cancel]")),
                    progress: text(".o_field_progressbar"),
                    error: text(".o_field_widget[name=exc_message]"),
                };
                console.log(`${REPORT} form: ${JSON.stringify(report)}`);
            },
        },
    ],
});

/* The dashboard, a chart, and how often a live view reloads when changes keep coming. */
const BURST_MS = 1200;
const BURST_EVERY_MS = 50;
const SETTLE_MS = 600; // the last reload the burst scheduled happens within this

registry.category("web_tour.tours").add("celery_task_dashboard_tour", {
    ...(session.server_version_info[0] < 18 ? { test: true } : {}),
    steps: () => [
        {
            content: "The dashboard shows its counts, queues and workers",
            trigger: ".o_celery_dashboard .o_celery_kpi_waiting .o_celery_kpi_value",
            run() {
                const text = (selector) => document.querySelector(selector)?.textContent.replace(/\s+/g, " ").trim();
                const rows = (selector) =>
                    [...document.querySelectorAll(`${selector} tbody tr`)].map((row) =>
                        [...row.querySelectorAll("td")].map((cell) => cell.textContent.trim())
                    );
                const report = {
                    waiting: text(".o_celery_kpi_waiting .o_celery_kpi_value"),
                    running: text(".o_celery_kpi_running .o_celery_kpi_value"),
                    failed: text(".o_celery_kpi_failed .o_celery_kpi_value"),
                    oldest: text(".o_celery_oldest strong"),
                    queues: rows(".o_celery_queues"),
                    workers: rows(".o_celery_workers"),
                };
                console.log(`${REPORT} dashboard: ${JSON.stringify(report)}`);
            },
        },
        {
            content: "Changes keep arriving for a while: count the reloads they cause",
            trigger: ".o_celery_dashboard .o_celery_kpis",
            run() {
                const live = odoo.__WOWL_DEBUG__.root.env.services.celery_task_live;
                const before = live.reloads;
                const ticker = setInterval(() => live.changed(), BURST_EVERY_MS);
                setTimeout(() => {
                    clearInterval(ticker);
                    setTimeout(() => {
                        const changes = BURST_MS / BURST_EVERY_MS;
                        const report = { changes, ms: BURST_MS + SETTLE_MS, reloads: live.reloads - before };
                        console.log(`${REPORT} burst: ${JSON.stringify(report)}`);
                        document.body.classList.add("o_celery_burst_done");
                    }, SETTLE_MS);
                }, BURST_MS);
            },
        },
        {
            content: "The burst is over",
            trigger: "body.o_celery_burst_done",
            run() {},
        },
        {
            content: "Open the tasks per hour",
            trigger: ".o_celery_dashboard .o_celery_charts button:contains(Tasks per hour)",
            run: "click",
        },
        {
            content: "Odoo's graph view draws them",
            trigger: ".o_graph_renderer canvas, .o_graph_view .o_view_nocontent",
            run() {
                console.log(`${REPORT} graph: ${JSON.stringify({ canvas: true })}`);
            },
        },
        ...openReport("celery_task.menu_celery_task_duration"),
        {
            content: "The durations pivot has the median and the 95th percentile",
            trigger: ".o_pivot table",
            run() {
                const headers = [...document.querySelectorAll(".o_pivot thead th")].map((th) => th.textContent.trim());
                console.log(`${REPORT} durations: ${JSON.stringify({ headers })}`);
            },
        },
        ...openReport("celery_task.menu_celery_task_failures"),
        {
            content: "The failures per model are a pie",
            trigger: ".o_graph_renderer canvas, .o_graph_view .o_view_nocontent",
            run() {
                console.log(`${REPORT} failures: ${JSON.stringify({ drawn: true })}`);
            },
        },
    ],
});

function openReport(xmlid) {
    return [
        {
            content: "Open the Reports menu",
            trigger: ".o_menu_sections [data-menu-xmlid='celery_task.menu_celery_reports']",
            run: "click",
        },
        { content: `Open ${xmlid}`, trigger: `[data-menu-xmlid='${xmlid}']`, run: "click" },
    ];
}

/* A scheduled task waits in the database: a manager moves its time in its form (tests/test_ui_tour.py). */
const NEW_ETA = "01/15/2031 09:00:00";
const ETA_FIELD = ".o_form_view .o_field_widget[name=eta]";

registry.category("web_tour.tours").add("celery_task_reschedule_tour", {
    ...(session.server_version_info[0] < 18 ? { test: true } : {}),
    steps: () => [
        {
            content: "Open the scheduled task",
            trigger: `.o_list_view tr.o_data_row td[name=name]:contains(${TOUR_TASKS}scheduled)`,
            run: "click",
        },
        {
            // 19.0 shows a set date as a button until it has the focus, then as an input
            content: "Its Run after field can be changed: focus it",
            trigger: `${ETA_FIELD} input:not([readonly]), ${ETA_FIELD} button.o_input`,
            run: "click",
        },
        {
            content: "Give it another time",
            trigger: `${ETA_FIELD} input:not([readonly])`,
            run() {
                const input = document.querySelector(`${ETA_FIELD} input`);
                input.value = NEW_ETA;
                input.dispatchEvent(new Event("input", { bubbles: true }));
                input.dispatchEvent(new Event("change", { bubbles: true }));
            },
        },
        {
            content: "Save it",
            trigger: ".o_form_view .o_form_button_save:not([disabled])",
            run: "click",
        },
        {
            content: "Back to the list: the form saves before it leaves",
            trigger: ".o_control_panel .breadcrumb-item:not(.active) a",
            run: "click",
        },
        {
            content: "Open the scheduled task again, read anew from the server",
            trigger: `.o_list_view tr.o_data_row td[name=name]:contains(${TOUR_TASKS}scheduled)`,
            run: "click",
        },
        {
            content: "It shows the stored time",
            trigger: `${ETA_FIELD} input, ${ETA_FIELD} button.o_input`,
            run() {
                const shown = document.querySelector(`${ETA_FIELD} input, ${ETA_FIELD} button.o_input`);
                const eta = (shown.value || shown.textContent).trim();
                console.log(`${REPORT} reschedule: ${JSON.stringify({ eta })}`);
            },
        },
    ],
});

/** @odoo-module */
/* The Celery app's first screen: what waits, what runs, where, and since when; links to the charts. */

import { Component, onWillStart, useState } from "@odoo/owl";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";

export class CeleryDashboard extends Component {
    static template = "celery_task.Dashboard";
    static props = ["*"];

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.state = useState({ data: null });
        onWillStart(async () => {
            this.state.data = await this.orm.call("celery.task", "get_dashboard", []);
        });
    }

    age(seconds) {
        if (seconds === null || seconds === undefined) {
            return "-";
        }
        if (seconds < 60) {
            return `${Math.round(seconds)} s`;
        }
        if (seconds < 3600) {
            return `${Math.round(seconds / 60)} min`;
        }
        return `${(seconds / 3600).toFixed(1)} h`;
    }

    open(xmlid) {
        this.action.doAction(xmlid);
    }
}

registry.category("actions").add("celery_task.dashboard", CeleryDashboard);

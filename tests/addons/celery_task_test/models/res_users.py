from odoo import fields, models

from odoo.addons.celery_task import celeryTask


class ResUsers(models.Model):
    _inherit = "res.users"

    voucher_total = fields.Integer()

    @celeryTask(model="res.users", name="present_gift")
    def present_voucher(self, amount=10):
        task = self.env.context["celeryTask"]
        task.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
        for user in self:
            user.sudo().voucher_total += amount
        task.update_state(state="PROGRESS", meta={"current": 2, "total": 2})
        return sum(self.sudo().mapped("voucher_total"))

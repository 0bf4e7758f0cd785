from odoo import models

from odoo.addons.celery_task import celeryTask


class ResPartner(models.Model):
    _inherit = "res.partner"

    @celeryTask(model="res.partner")
    def stamp_ref(self, ref):
        self.write({"ref": ref})

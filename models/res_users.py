"""Each user's choice of the background-task notices they get: all, failures only, or none."""

from odoo import fields, models

NOTICE_CHOICES = [
    ("all", "All: finished and failed"),
    ("failures", "Failures only"),
    ("none", "None"),
]


class ResUsers(models.Model):
    _inherit = "res.users"

    celery_task_notify = fields.Selection(
        NOTICE_CHOICES,
        "Background Task Notices",
        default="all",
        help="Which notices of your background tasks you get: they come grouped, a few seconds apart.",
    )

    @property
    def SELF_READABLE_FIELDS(self):
        return [*super().SELF_READABLE_FIELDS, "celery_task_notify"]

    @property
    def SELF_WRITEABLE_FIELDS(self):
        return [*super().SELF_WRITEABLE_FIELDS, "celery_task_notify"]

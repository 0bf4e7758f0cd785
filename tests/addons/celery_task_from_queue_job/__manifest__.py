{
    "name": "Celery Task (converted from queue_job)",
    "summary": "A small addon written for OCA queue_job, converted line by line (docs/from-queue-job.md)",
    "version": "1.0.0",
    "license": "LGPL-3",
    "author": "celery_task developers",
    "depends": ["celery_task"],
    "data": ["security/ir.model.access.csv", "data/celery_task_limit.xml"],
    "installable": True,
}

{
    "name": "Celery Task benchmark: OCA queue_job side",
    "summary": "The bench model with with_delay() methods, for the queue_job comparison (bench/queue_job_side.py)",
    "version": "1.0.0",
    "license": "LGPL-3",
    "depends": ["queue_job"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
}

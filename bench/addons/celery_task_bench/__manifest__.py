{
    "name": "Celery Task (benchmark addon)",
    "summary": "Decorated methods that bench/run.py times",
    "version": "1.0.0",
    "license": "LGPL-3",
    "depends": ["celery_task"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
}

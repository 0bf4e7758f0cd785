{
    "name": "Celery Task (test addon)",
    "summary": "Decorated methods the celery_task test suite drives",
    "version": "1.0.0",
    "license": "LGPL-3",
    "depends": ["celery_task"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
}

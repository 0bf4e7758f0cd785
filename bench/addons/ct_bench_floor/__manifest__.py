{
    "name": "Celery Task benchmark: the memory floor",
    "summary": "The bench model without celery_task, for the floor worker's memory (bench/floor_app.py)",
    "version": "1.0.0",
    "license": "LGPL-3",
    "depends": ["bus"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
}

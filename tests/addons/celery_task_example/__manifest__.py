{
    "name": "Celery Task (example)",
    "summary": "The README's example: one decorated method, run by .ci/wheel_seed.py from the installed wheel",
    "version": "1.0.0",
    "license": "LGPL-3",
    "author": "celery_task developers",
    "depends": ["celery_task"],
    "installable": True,
}

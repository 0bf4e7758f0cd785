from . import celery_periodic_task, celery_task, celery_task_progress

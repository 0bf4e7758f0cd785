from . import celery_task, celery_task_progress

from . import (
    celery_periodic_task,
    celery_task,
    celery_task_limit,
    celery_task_link,
    celery_task_progress,
    celery_workflow,
)

from . import (
    base,
    celery_periodic_task,
    celery_queue,
    celery_task,
    celery_task_duration,
    celery_task_hourly,
    celery_task_limit,
    celery_task_link,
    celery_task_progress,
    celery_workflow,
    res_users,
)

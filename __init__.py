from . import cli, models
from .celery_task import RetryableError, celery_task, celeryTask

__all__ = ["RetryableError", "celeryTask", "celery_task"]

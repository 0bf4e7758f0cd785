from . import cli, controllers, models
from .canvas import chain, chord, group, signature
from .celery_task import RetryableError, celery_task, celeryTask

__all__ = ["RetryableError", "celeryTask", "celery_task", "chain", "chord", "group", "signature"]

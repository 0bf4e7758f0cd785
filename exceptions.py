"""Errors a task can end with; each names exactly what was wrong with its input."""


class TaskError(Exception):
    """Base class: the task cannot run as asked, and retrying will not help."""


class MalformedMessage(TaskError):
    """The broker message does not have the shape this addon publishes."""


class UnknownTask(TaskError):
    """The message or record names no task this worker knows."""


class UnservedDatabase(TaskError):
    """The task targets a database this worker does not serve."""


class RecordsGone(TaskError):
    """Some records the task was called on were deleted before it ran."""


class InactiveUser(TaskError):
    """The calling user no longer exists or was deactivated."""


class NotATask(TaskError):
    """The model method exists but is not decorated as a Celery task."""


class BadArguments(TaskError):
    """The stored arguments do not fit the method's signature."""


class RetryableError(Exception):
    """Raise from a task method to ask for a retry, within the task's max_retries."""

"""What the decorator knows about each task, shared by the caller side and the worker side."""

import contextvars
import dataclasses
import datetime
import functools
import inspect
from collections.abc import Callable

SPECS = {}

_inline_once = contextvars.ContextVar("celery_task_inline_once", default=None)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One decorated method: its Celery task name and the options it is published with."""

    model: str
    method: str
    name: str
    func: Callable = dataclasses.field(compare=False, repr=False)
    queue: str | None = None
    dbname: str | None = None
    countdown: float | None = None
    eta: datetime.datetime | None = None
    expires: float | datetime.datetime | None = None
    priority: int | None = None
    max_retries: int = 0
    retry_for: tuple = ()
    retry_backoff: float = 1.0
    time_limit: float | None = None
    soft_time_limit: float | None = None
    sudo: bool = False

    @property
    def task_name(self):
        return f"{self.model}.{self.name}"

    @functools.cached_property
    def signature(self):
        return inspect.signature(self.func)

    def bind(self, records, args, kwargs):
        """Check the call fits the method's signature; TypeError names the task otherwise."""
        try:
            return self.signature.bind(records, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.task_name}{self.signature}: {exc}") from None


def add(spec):
    known = SPECS.get(spec.task_name)
    if known and (known.model, known.method) != (spec.model, spec.method):
        raise TypeError(
            f"task name {spec.task_name!r} is already used by {known.model}.{known.method}; "
            "give one of them another name="
        )
    SPECS[spec.task_name] = spec


def is_decorated(model_class, method):
    """True when ``method`` on the model, or a method it overrides, carries our decorator."""
    return _spec_in_mro(model_class, method) is not None


def spec_of(records, method):
    """The spec of ``records``' decorated method named ``method``, or None (not a recordset, not decorated)."""
    if not isinstance(method, str) or not hasattr(records, "_name") or not hasattr(records, "env"):
        return None
    return _spec_in_mro(type(records), method)


def _spec_in_mro(model_class, method):
    for klass in model_class.__mro__:
        spec = getattr(klass.__dict__.get(method), "_celery_task_spec", None)
        if spec is not None:
            return spec
    return None


def run_next_call_inline(spec):
    """Mark that the next call of ``spec`` in this context is the worker running it, not a new call."""
    return _inline_once.set(spec.task_name)


def reset_inline(token):
    _inline_once.reset(token)


def take_inline(spec):
    """Consume the worker's mark: True exactly once for the call the worker makes."""
    if _inline_once.get() != spec.task_name:
        return False
    _inline_once.set(None)
    return True


def describe_call(model, ids, method, args, kwargs):
    """A readable argsrepr for Flower: ``res.users(7,).present_voucher(amount=10)``."""
    parts = [repr(arg) for arg in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
    return f"{model}{tuple(ids)!r}.{method}({', '.join(parts)})"

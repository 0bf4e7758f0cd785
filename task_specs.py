"""What the decorator knows about each task, shared by the caller side and the worker side."""

import contextvars
import dataclasses
import datetime
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable

from . import config

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
    unique: bool | Callable = False
    unique_running: bool = False
    concurrency: int | None = None
    limit: str | None = None
    rate_limit: str | None = None

    @property
    def task_name(self):
        return f"{self.model}.{self.name}"

    @property
    def limit_name(self):
        """The limit this task counts against: its ``limit``, or its own name with ``concurrency``; None."""
        return self.limit or (self.task_name if self.concurrency else None)

    @property
    def default_limit_size(self):
        """The size of its limit when no ``celery.task.limit`` record gives one: the config's, its concurrency, 1."""
        return config.configured_limit_sizes().get(self.limit_name) or self.concurrency or 1

    def identity_key(self, records, args, kwargs, dbname, payload, unique=None):
        """The key equal open tasks share, or None for a task that is not unique.

        ``payload``: the arguments as stored (JSON with sorted keys), so equal means stored equal.
        ``unique``: the call's own (True, a key string, a key function), else the decorator's.
        """
        unique = self.unique if unique is None else unique
        if not unique:
            return None
        if unique is True:
            call = json.dumps([dbname, records._name, sorted(records._ids), payload])
            return f"{self.task_name}:{hashlib.sha256(call.encode()).hexdigest()}"
        if isinstance(unique, str):
            return f"{self.task_name}:{unique}"
        try:
            key = unique(records, *args, **kwargs)
        except Exception as exc:
            raise ValueError(f"{self.task_name}: its unique key function raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(key, str) or not key:
            raise TypeError(f"{self.task_name}: its unique key function returned {key!r:.80}, not a non-empty string")
        return f"{self.task_name}:{key}"

    @functools.cached_property
    def signature(self):
        return inspect.signature(self.func)

    def bind(self, records, args, kwargs):
        """Check the call fits the method's signature; TypeError names the task otherwise."""
        try:
            return self.signature.bind(records, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.task_name}{self.signature}: {exc}") from None


RATE_LIMIT = re.compile(r"^\d+(\.\d+)?(/[smh])?$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")
PRIORITIES = range(10)

#: What one call may set, over its decorator's defaults: ``records.with_delay(**options).method(...)``,
#: ``signature(records.method, ...).set(**options)`` and ``.apply_async(**options)``.
CALL_OPTIONS = (
    "eta",
    "countdown",
    "expires",
    "priority",
    "queue",
    "max_retries",
    "time_limit",
    "soft_time_limit",
    "unique",
)

#: queue_job's spellings of our options.
CALL_OPTION_ALIASES = {"identity_key": "unique"}


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """One call's options, checked; None leaves the decorator's. Datetimes are naive UTC, as Odoo stores them.

    ``unique``: True (equal records and arguments), a key string, or ``key(records, *args, **kwargs)``.
    """

    eta: datetime.datetime | None = None
    countdown: float | None = None
    expires: float | datetime.datetime | None = None
    priority: int | None = None
    queue: str | None = None
    max_retries: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    unique: bool | str | Callable | None = None


NO_OPTIONS = CallOptions()


def call_options(where, options):
    """``options`` of one call as :class:`CallOptions`, or TypeError/ValueError saying what is wrong; writes nothing."""
    options = dict(options)
    for alias, name in CALL_OPTION_ALIASES.items():
        if alias in options:
            if name in options:
                raise TypeError(f"{where}: {alias} is queue_job's name for {name}; give one of them")
            options[name] = options.pop(alias)
    unknown = sorted(set(options) - set(CALL_OPTIONS))
    if unknown:
        known = ", ".join([*CALL_OPTIONS, *CALL_OPTION_ALIASES])
        raise TypeError(f"{where}: unknown option(s) {', '.join(unknown)}; a call takes {known}")
    if options.get("eta") is not None and options.get("countdown") is not None:
        raise ValueError(f"{where}: give eta or countdown, not both")
    checked = {name: _checked(where, name, value) for name, value in options.items() if value is not None}
    return CallOptions(**checked)


def _checked(where, name, value):
    if name in ("eta", "expires") and isinstance(value, datetime.datetime):
        return as_utc(value)
    if name == "eta":
        raise TypeError(f"{where}: eta is a datetime, not {value!r:.80}")
    if name in ("countdown", "expires", "time_limit", "soft_time_limit"):
        return _seconds(where, name, value, positive=name.endswith("time_limit"))
    if name in ("priority", "max_retries"):
        if type(value) is not int:
            raise TypeError(f"{where}: {name} is a whole number, not {value!r:.80}")
        if name == "priority" and value not in PRIORITIES:
            raise ValueError(f"{where}: priority is 0 (first) to 9 (last), not {value}")
        if value < 0:
            raise ValueError(f"{where}: max_retries is 0 or more, not {value}")
        return value
    if name == "queue":
        if not isinstance(value, str) or not QUEUE_NAME.match(value):
            raise ValueError(f"{where}: queue is a name (letters, digits, _ . : @ -), not {value!r:.80}")
        return value
    if value == "" or not (isinstance(value, (bool, str)) or callable(value)):
        raise TypeError(f"{where}: unique is True, a key string or a key(records, *args, **kwargs), not {value!r:.80}")
    return value


def _seconds(where, name, value, positive):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} is a number of seconds, not {value!r:.80}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{where}: {name} is {'more than' if positive else 'at least'} 0 seconds, not {value}")
    return float(value)


def as_utc(moment):
    """``moment`` as Odoo stores datetimes: naive UTC (an aware one converted; a naive one taken as UTC)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def check_options(options):
    """Refuse, when the module is imported, a decorator option that cannot work; say which and why."""
    where = f"@celeryTask(model={options['model']!r}, name={options['name']!r})"
    call_options(where, {name: options[name] for name in CALL_OPTIONS if name != "unique"})
    unique, concurrency, limit, rate_limit = (options[key] for key in ("unique", "concurrency", "limit", "rate_limit"))
    if not isinstance(unique, bool) and not callable(unique):
        raise TypeError(f"{where}: unique is True, False or a key(records, *args, **kwargs) -> str, not {unique!r}")
    if options["unique_running"] and not unique:
        raise TypeError(f"{where}: unique_running needs unique")
    if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
        raise ValueError(f"{where}: concurrency is a number of tasks at once, at least 1, not {concurrency!r}")
    if limit is not None and (not isinstance(limit, str) or not limit.strip()):
        raise TypeError(f"{where}: limit is the name of a limit, not {limit!r}")
    if rate_limit is not None and not (isinstance(rate_limit, str) and RATE_LIMIT.match(rate_limit)):
        raise ValueError(f"{where}: rate_limit is Celery's, such as '10/m' (per s, m or h), not {rate_limit!r}")


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

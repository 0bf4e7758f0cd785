"""For the tests of addons that call decorated methods: keep the tasks the code asks for, look at them, run them.

    from odoo.addons.celery_task.testing import trap_tasks

    class TestCarrier(TransactionCase):
        def test_booking_is_queued(self):
            with trap_tasks() as trap:
                self.order.action_confirm()  # calls self.order.with_delay(priority=0).book_shipment("fast")
            trap.assert_count(1)
            trap.assert_called(self.order.book_shipment, args=("fast",), priority=0)
            trap.run()  # the kept tasks, inline, in this test's transaction
            self.assertTrue(self.order.shipment_booked)

Like OCA queue_job's ``trap_jobs()``. Inside ``trap_tasks()`` a decorated call (plain, with options,
or a workflow) writes no task record and publishes nothing: it is kept, with its options, and
returns a :class:`TrappedTask` (``.id`` as an ``AsyncResult`` has). A ``TransactionCase`` never
commits, so its calls would never reach a worker anyway.
"""

import contextlib
import dataclasses
import uuid

from . import canvas, task_specs
from .celery_task import run_inline, trapping


@dataclasses.dataclass
class TrappedTask:
    """A decorated call kept by a trap: which method, on which records, with what, and its options."""

    spec: task_specs.TaskSpec
    records: object
    args: tuple
    kwargs: dict
    options: task_specs.CallOptions
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def name(self):
        return self.spec.task_name

    def run(self):
        """The method, inline, in the caller's transaction; returns its result."""
        return run_inline(self.spec, self.records, self.args, self.kwargs)

    def __repr__(self):
        call = task_specs.describe_call(self.records._name, self.records._ids, self.spec.method, self.args, self.kwargs)
        given = {name: value for name, value in dataclasses.asdict(self.options).items() if value is not None}
        return f"<trapped {call}{f' {given}' if given else ''}>"


@dataclasses.dataclass
class TrappedWorkflow:
    """A chain, group or chord kept by a trap."""

    canvas: object
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))

    def run(self):
        """Every step inline, in turn, as async off runs it; returns what its last step returned."""
        return canvas.run_workflow_inline(self.canvas)


class TaskTrap:
    """What a test's code asked for inside :func:`trap_tasks`, in the order it asked."""

    def __init__(self):
        self.kept = []

    def keep(self, spec, records, args, kwargs, options):
        kept = TrappedTask(spec, records, tuple(args), dict(kwargs), options)
        self.kept.append(kept)
        return kept

    def keep_workflow(self, canvas):
        kept = TrappedWorkflow(canvas)
        self.kept.append(kept)
        return kept

    @property
    def tasks(self):
        """The decorated calls kept (the steps of a workflow are not among them: see :attr:`kept`)."""
        return [kept for kept in self.kept if isinstance(kept, TrappedTask)]

    def tasks_of(self, method):
        """The kept calls of ``method``: ``records.method`` (those records), or a task name ``model.name``."""
        if isinstance(method, str):
            return [task for task in self.tasks if task.name == method]
        records, name = method.__self__, method.__name__
        return [task for task in self.tasks if task.spec.method == name and task.records == records]

    def assert_count(self, count, method=None):
        """Exactly ``count`` calls kept (of ``method``, when given)."""
        found = self.tasks if method is None else self.tasks_of(method)
        if len(found) != count:
            raise AssertionError(f"{len(found)} task(s) kept, not {count}: {found}")

    def assert_called(self, method, args=None, kwargs=None, **options):
        """A call of ``method`` was kept with these ``args`` and ``kwargs`` (when given) and these options."""
        for task in self.tasks_of(method):
            if args is not None and task.args != tuple(args):
                continue
            if kwargs is not None and task.kwargs != kwargs:
                continue
            if all(getattr(task.options, name) == value for name, value in _options(options).items()):
                return task
        raise AssertionError(f"no call of {method!r:.80} with {args=}, {kwargs=}, {options}; kept: {self.kept}")

    def run(self):
        """Run what was kept, inline, in order, each once; returns their results."""
        kept, self.kept = self.kept, []
        return [item.run() for item in kept]


def _options(options):
    """``options`` as the trap stores them (checked, queue_job's names accepted)."""
    checked = task_specs.call_options("assert_called()", options)
    return {name: value for name, value in dataclasses.asdict(checked).items() if value is not None}


@contextlib.contextmanager
def trap_tasks():
    """Keep every decorated call inside instead of writing it; yields the :class:`TaskTrap`."""
    with trapping(TaskTrap()) as trap:
        yield trap

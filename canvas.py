"""Workflows of decorated methods, with Celery's names: ``signature``, ``chain``, ``group``, ``chord``.

``delay()`` writes every step as a task record in the caller's transaction, like a decorated
call: the steps that can start at once are ``pending`` and published after the commit; the
others are ``waiting``, in the database only, each linked to the steps it waits for. A worker
releases a waiting step in the transaction that commits the last of those (see
``worker/workflow.py``): no polling, no result backend, nothing sent before the commit, nothing
at all on rollback. The whole workflow is checked before anything is written: a bad step raises
in the caller and writes nothing.

Results travel as in Celery: a step receives the result of the step before it as its first
argument (the list of results, in order, after a group), unless its signature is ``immutable``.
Each step takes options of its own, as Celery's ``set()`` and ``apply_async()`` give them (a
workflow's steps are not deduplicated: ``unique`` is refused there). With async off, a workflow runs
inline, each step in turn, and ``delay()`` returns what its last step returned.
"""

import dataclasses
import uuid

from celery.result import GroupResult

from . import config, outbox, serialization, task_record, task_specs
from .app import celery_app
from .celery_task import INLINE_CONTEXT_KEY, call_with_options, run_inline, trap_of_this_call

#: Stands for the result a step will receive, to check the call fits before the result exists.
_RESULT = object()

#: What the first step of a workflow run inline receives: nothing.
_NOTHING = object()


class Signature:
    """One decorated method on a recordset, with its arguments and options: a step of a workflow."""

    def __init__(self, method, *args, immutable=False, **kwargs):
        records = getattr(method, "__self__", None)
        spec = task_specs.spec_of(records, getattr(method, "__name__", None))
        if spec is None:
            raise TypeError(
                f"signature() takes a decorated method of a recordset, such as records.method; "
                f"{method!r:.120} is not one (decorate it with @celeryTask)"
            )
        serialization.dumps({"args": list(args), "kwargs": kwargs}, path=f"{spec.task_name} arguments")
        self.spec, self.records, self.args, self.kwargs, self.immutable = spec, records, args, kwargs, immutable
        self.options = task_specs.NO_OPTIONS

    def __repr__(self):
        return task_specs.describe_call(self.records._name, self.records._ids, self.spec.method, self.args, self.kwargs)

    def set(self, **options):
        """Options of this step (Celery's ``Signature.set``): ``eta``, ``countdown``, ``priority``, ``queue``...;
        returns the signature. A bad option raises at once."""
        given = {name: value for name, value in dataclasses.asdict(self.options).items() if value is not None}
        if "eta" in options or "countdown" in options:
            given.pop("eta", None)
            given.pop("countdown", None)
        self.options = task_specs.call_options(f"signature({self!r:.80}).set()", {**given, **options})
        return self

    def apply_async(self, args=(), kwargs=None, **options):
        """Celery's spelling of a call with options: ``args`` go before the signature's own, ``kwargs`` over them."""
        merged = Signature.__new__(Signature)
        merged.__dict__.update(self.__dict__, args=(*args, *self.args), kwargs={**self.kwargs, **(kwargs or {})})
        return merged.set(**options).delay()

    def delay(self):
        """The step alone: the same as calling the method (with this signature's options)."""
        return call_with_options(self.records, self.spec, self.args, self.kwargs, self.options)

    def _plan(self, plan, after):
        if self.options.unique is not None:
            raise ValueError(f"{self!r:.80}: a workflow's steps are not deduplicated; unique has no place here")
        index = plan.add_step(self, after)
        return _Ends([index]), lambda: plan.step_result(index)

    def _run_inline(self, received):
        args = self.args if received is _NOTHING or self.immutable else (received, *self.args)
        return run_inline(self.spec, self.records, args, self.kwargs)

    def _signatures(self):
        yield self


def signature(method, *args, immutable=False, **kwargs):
    """``signature(records.method, *args, **kwargs)``: a step that receives the previous step's result first.

    ``immutable=True``: it receives nothing but these arguments.
    """
    return Signature(method, *args, immutable=immutable, **kwargs)


class _Canvas:
    kind = None

    def __init__(self, *steps):
        if len(steps) == 1 and isinstance(steps[0], (list, tuple)):
            steps = tuple(steps[0])
        if not steps:
            raise ValueError(f"an empty {self.kind} has nothing to run")
        for step in steps:
            if not isinstance(step, (Signature, _Canvas)):
                raise TypeError(f"a {self.kind} takes signatures, chains, groups and chords, not {step!r:.80}")
        self.steps = steps

    def __repr__(self):
        return f"{self.kind}({', '.join(map(repr, self.steps))})"

    def _signatures(self):
        for step in self.steps:
            yield from step._signatures()

    def delay(self):
        """Write every step in the caller's transaction; those that can start are published once it commits.

        With async off (or ``celery_task_inline`` in the context), run it inline instead: the last step's result.
        """
        plan = _Plan(self)
        trap = trap_of_this_call()
        if trap is not None:
            return trap.keep_workflow(self)
        if plan.env.context.get(INLINE_CONTEXT_KEY) or not config.async_enabled():
            return run_workflow_inline(self)
        return plan.write()

    def _plan(self, plan, after):
        """In order: each step after the previous one. Returns (the ends, the result's factory)."""
        with plan.node(self):
            for step in self.steps:
                after, result = step._plan(plan, after)
        return after, result

    def _run_inline(self, received):
        for step in self.steps:
            received = step._run_inline(received)
        return received


class chain(_Canvas):  # noqa: N801 - Celery's names
    """Steps one after the other: each starts once the one before it committed its effects."""

    kind = "chain"


class group(_Canvas):  # noqa: N801
    """Steps side by side, on any worker; a step after the group receives their results in order."""

    kind = "group"

    def _plan(self, plan, after):
        ends, results = _Ends(many=True), []
        with plan.node(self) as node:
            for step in self.steps:
                step_ends, result = step._plan(plan, after)
                ends.extend(step_ends)
                results.append(result)
        return ends, lambda: GroupResult(plan.node_uuid(node), [result() for result in results], app=celery_app)

    def _run_inline(self, received):
        return [step._run_inline(received) for step in self.steps]


class chord(_Canvas):  # noqa: N801
    """``chord(header, callback)``: the header's steps side by side, then the callback, given their results."""

    kind = "chord"

    def __init__(self, header, body):
        if not isinstance(header, group):
            header = group(*header) if isinstance(header, (list, tuple)) else group(header)
        if not isinstance(body, (Signature, _Canvas)):
            raise TypeError(f"a chord's callback is a signature or a workflow, not {body!r:.80}")
        super().__init__(header, body)


class _Ends(list):
    """Indexes of the steps a next step waits for; ``many``: it receives the list of their results."""

    def __init__(self, indexes=(), many=False):
        super().__init__(indexes)
        self.many = many


class _Plan:
    """A workflow checked whole, then written: nodes (``celery.workflow``), task records, links."""

    def __init__(self, canvas):
        self.nodes = []  # (canvas, parent index)
        self.steps = []  # (signature, node index, ends it waits for)
        self.open = []
        self.node_ids, self.node_uuids, self.step_results, self.step_ids = {}, {}, {}, {}
        _, self.result = canvas._plan(self, _Ends())
        self.env = self.steps[0][0].records.env
        for step, _node, after in self.steps:
            if step.records.env.cr is not self.env.cr:
                raise ValueError(f"{self.nodes[0][0].kind}: every step's records must come from one transaction")
            fits = (_RESULT, *step.args) if after and not step.immutable else step.args
            step.spec.bind(step.records, fits, step.kwargs)

    def node(self, canvas):
        return _NodeScope(self, canvas)

    def add_step(self, signature, after):
        self.steps.append((signature, self.open[-1] if self.open else None, after))
        return len(self.steps) - 1

    def write(self):
        cr = self.env.cr
        for index, (canvas, parent) in enumerate(self.nodes):
            cr.execute(
                task_record.INSERT_WORKFLOW,
                {
                    "uuid": str(uuid.uuid4()),
                    "name": repr(canvas)[:1000],
                    "kind": canvas.kind,
                    "parent_id": self.node_ids.get(parent),
                    "root_id": self.node_ids.get(0),
                    "uid": self.env.uid,
                },
            )
            row = cr.dictfetchone()
            self.node_ids[index], self.node_uuids[index] = row["id"], row["uuid"]
        for index, (step, node, after) in enumerate(self.steps):
            receives = task_record.RECEIVES_NOTHING
            if after and not step.immutable:
                receives = task_record.RECEIVES_RESULTS if after.many else task_record.RECEIVES_RESULT
            workflow = {
                "waits": bool(after),
                "workflow_id": self.node_ids[node],
                "workflow_root_id": self.node_ids[0],
                "receives": receives,
            }
            result, record_id = outbox.enqueue_step(
                step.spec, step.records, step.args, step.kwargs, workflow, step.options
            )
            self.step_results[index], self.step_ids[index] = result, record_id
            for sequence, predecessor in enumerate(after):
                cr.execute(
                    task_record.INSERT_LINK,
                    {"predecessor": self.step_ids[predecessor], "successor": record_id, "sequence": sequence},
                )
        return self.result()

    def step_result(self, index):
        return self.step_results[index]

    def node_uuid(self, index):
        return self.node_uuids[index]


class _NodeScope:
    def __init__(self, plan, canvas):
        self.plan, self.canvas = plan, canvas

    def __enter__(self):
        self.plan.nodes.append((self.canvas, self.plan.open[-1] if self.plan.open else None))
        self.plan.open.append(len(self.plan.nodes) - 1)
        return self.plan.open[-1]

    def __exit__(self, *exc):
        self.plan.open.pop()


def run_workflow_inline(workflow):
    """Every step of ``workflow`` inline, in turn: what its last step returns (a trap's run, testing.py)."""
    return workflow._run_inline(_NOTHING)


__all__ = ["chain", "chord", "group", "signature"]

"""JSON with a few tagged types, so arguments, context and results travel without pickle.

Recordsets travel as model + ids, dates and datetimes as ISO strings, Decimals as strings.
Anything else that JSON cannot carry is refused with a TypeError that names the value's path.
"""

import datetime
import decimal
import json

from odoo.models import BaseModel

TAG = "__celery_task__"


def to_json_safe(value, path="value"):
    """Return ``value`` made of JSON types only, or raise TypeError naming the offending path."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, BaseModel):
        return {TAG: "records", "model": value._name, "ids": list(value._ids)}
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        safe = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has a non-string key {key!r}; JSON object keys must be strings")
            safe[key] = to_json_safe(item, f"{path}[{key!r}]")
        return safe
    raise TypeError(f"{path} is not JSON-serializable: {type(value).__name__} {value!r:.80}")


def from_json_safe(value, env):
    """Inverse of :func:`to_json_safe`; recordsets are browsed in ``env``."""
    if isinstance(value, list):
        return [from_json_safe(item, env) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {key: from_json_safe(item, env) for key, item in value.items()}
    if kind == "records":
        return env[value["model"]].browse(value["ids"])
    if kind == "datetime":
        return datetime.datetime.fromisoformat(value["value"])
    if kind == "date":
        return datetime.date.fromisoformat(value["value"])
    if kind == "decimal":
        return decimal.Decimal(value["value"])
    raise ValueError(f"unknown tagged value {kind!r}")


def dumps(value, path="value"):
    return json.dumps(to_json_safe(value, path), separators=(",", ":"), sort_keys=True)


def loads(text, env):
    return from_json_safe(json.loads(text), env)


def safe_context(context):
    """The JSON-safe part of an Odoo context (lang, tz, companies...); live objects are dropped."""
    safe = {}
    for key, item in context.items():
        try:
            safe[key] = to_json_safe(item, key)
        except TypeError:
            continue
    return safe

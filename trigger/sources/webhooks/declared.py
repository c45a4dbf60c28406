"""A JSON object checked against the keys a trigger declares, with their JSON types.

The generic hook's body and a CloudEvent's ``data`` are both such objects: each
declared key becomes the template field ``<prefix><key>``, and a value follows the
same rule as every outside string (``trigger.core.text``).
"""

from __future__ import annotations

from trigger.core import text
from trigger.core.event import AttributeValue
from trigger.core.settings.hooks import BodyType
from trigger.ingest import Rejected

MAX_STRING = 1000


def declared_values(
    data: dict[str, object],
    fields: dict[str, BodyType],
    optional: list[str],
    prefix: str,
    container: str,
) -> dict[str, AttributeValue]:
    """The template fields of ``data``; a 400 naming the key that is unknown, missing, of
    the wrong type or refused (``container``: what holds the keys, "body" or "data")."""
    where = f"{container} key"
    unknown = sorted(key for key in data if key not in fields)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejected(400, f"the {container} has keys this trigger does not declare: {shown}")
    missing = [k for k in fields if k not in data and k not in optional]
    if missing:
        raise Rejected(400, f"the {container} is missing required keys: {', '.join(missing)}")
    out: dict[str, AttributeValue] = {}
    for key, kind in fields.items():
        if key not in data:
            continue
        value = data[key]
        if not _is(kind, value):
            raise Rejected(400, f"{where} {key!r} must be a JSON {kind}")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise Rejected(400, f"{where} {key!r} is over {MAX_STRING} characters")
            why = text.problem(value)
            if why is not None:
                raise Rejected(400, f"{where} {key!r} = {text.quoted(value)} {why}; refused")
        out[f"{prefix}{key}"] = value  # type: ignore[assignment]
    return out


def _is(kind: str, value: object) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)

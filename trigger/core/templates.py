"""Branch and parameter templates: ``{field}`` substitution from a whitelist.

Templates come from a config file and values come from outside (a pushed branch
name, a file name), so rendering must never reach Python objects: we parse with
``string.Formatter`` only to find the fields, refuse attribute access, indexing,
conversions and format specs, and build the result by concatenation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from trigger.core.errors import TemplateError

_FIELD = re.compile(r"[a-z][a-z0-9_]*\Z")

# Fields every event provides, whatever its source.
COMMON_FIELDS = frozenset({"event_id", "event_kind", "event_date", "event_time"})

# Fields each kind of source adds. A trigger may use the fields of the sources
# it declares; a trigger with no source section is fired by hand only.
SOURCE_FIELDS: dict[str, frozenset[str]] = {
    "manual": frozenset({"fired_by"}),
    "github": frozenset({"git_branch", "git_tag", "git_sha", "git_short_sha", "repo", "pusher"}),
    "gitlab": frozenset({"git_branch", "git_tag", "git_sha", "git_short_sha", "repo", "pusher"}),
    "generic": frozenset(),  # plus "body_<key>" fields declared in the trigger's schema
    # plus "data_<key>" fields declared in the trigger's schema
    "cloudevents": frozenset({"ce_id", "ce_type", "ce_source", "ce_subject", "ce_time"}),
    "files": frozenset(
        {
            "file_path",
            "file_rel",
            "file_name",
            "file_stem",
            "file_ext",
            "file_dir",
            "file_size",
            "file_mtime",
            "file_sha256",
        }
    ),
    "schedule": frozenset({"scheduled_time", "scheduled_date"}),
}


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and field names, in order."""

    source: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for _, name in self.parts if name is not None)

    def render(self, values: Mapping[str, object]) -> str:
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                if name not in values or values[name] is None:
                    raise TemplateError(
                        f"template {self.source!r} needs field {name!r}, "
                        "which this event does not provide"
                    )
                out.append(str(values[name]))
        return "".join(out)


def parse(source: str, *, where: str, allowed: Iterable[str]) -> Template:
    """Parse ``source`` and check every field against ``allowed``.

    ``where`` names the config location (``triggers.orders.branch``) so the
    error tells the user which line to fix. Matching asks for a trigger's templates
    on every event; the parse is cached (a ``Template`` is immutable).
    """
    return _parse(source, where, frozenset(allowed))


@lru_cache(maxsize=1024)
def _parse(source: str, where: str, allowed_set: frozenset[str]) -> Template:
    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise TemplateError(
            f"{where}: template {source!r} is malformed ({exc}); "
            "write fields as {{name}} and literal braces as {{{{ and }}}}"
        ) from None
    for literal, field, spec, conversion in parsed:
        if field is None:
            parts.append((literal, None))
            continue
        if conversion is not None or spec:
            raise TemplateError(
                f"{where}: template {source!r} uses a conversion or format spec in "
                f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; "
                "only plain {name} fields are allowed"
            )
        if not _FIELD.match(field):
            raise TemplateError(
                f"{where}: template {source!r} has field {field!r}; fields are plain "
                "lower-case names (no attribute access, indexing or positional {})"
            )
        if field not in allowed_set:
            raise TemplateError(
                f"{where}: template {source!r} uses unknown field {field!r}; "
                f"allowed here: {', '.join(sorted(allowed_set))}"
            )
        parts.append((literal, field))
    return Template(source=source, parts=tuple(parts))

"""The layout's rules, read from the source: imports run one way, nothing registers
itself when it is imported.

sources → event → match → enqueue → run → notify reads top to bottom in the tree:
``trigger.core`` is the kernel both halves share; ``workflows`` is the durable side
and stands only on the kernel; everything else in ``trigger`` stands on both, with
``trigger.service`` (the composition root) and ``trigger.cli`` on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

OURS = ("trigger", "workflows")

# Who may import whom, by the longest matching prefix: a module of the key may import
# only modules under the listed prefixes (and the key's own package).
# The layers above the two halves, lowest first: each may import the layers below it.
_BASE = ("trigger.core", "workflows")
_UPPER = ("trigger.context", "trigger.http", "trigger.ingest", "trigger.sources", "trigger.ops")
ALLOWED: dict[str, tuple[str, ...]] = {
    "trigger.core": ("trigger.core",),
    "workflows": _BASE,
    **{layer: (*_BASE, *_UPPER[: i + 1]) for i, layer in enumerate(_UPPER)},
    "trigger.service": ("trigger", "workflows"),
    "trigger.cli": ("trigger", "workflows"),
    "trigger.cli.logs": ("trigger.core",),
    "trigger": (),  # the package's own __init__
}


def _modules() -> dict[str, Path]:
    found = {}
    for root in OURS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours that ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m.split(".")[0] in OURS}


def _rule(name: str) -> tuple[str, ...]:
    owner = max((k for k in ALLOWED if name == k or name.startswith(k + ".")), key=len)
    return ALLOWED[owner]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_one_way(name: str) -> None:
    allowed = _rule(name)
    wrong = sorted(m for m in _imports(name, MODULES[name]) if not _within(m, allowed))
    assert wrong == [], f"{name} may import only {', '.join(allowed) or 'nothing of ours'}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_nothing_registers_itself_when_imported(name: str) -> None:
    """A call at module level whose name says it registers is a registry filled by an
    import; the composition root passes such things down instead."""
    tree = ast.parse(MODULES[name].read_text())
    calls = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    ]
    named = [ast.unparse(call.func) for call in calls]
    assert [n for n in named if "register" in n.rsplit(".", 1)[-1]] == []


# DBOS's private modules change without notice: one module of ours may import them.
DBOS_COMPAT = "workflows.dbos_compat"


def _dbos_private(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("dbos._")]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if module.startswith("dbos._"):
                found.append(module)
            elif module == "dbos":
                found += [f"dbos.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize("name", sorted(set(MODULES) - {DBOS_COMPAT}))
def test_only_the_compat_module_imports_private_dbos(name: str) -> None:
    assert _dbos_private(MODULES[name]) == [], f"import it through {DBOS_COMPAT}"


def test_every_module_of_ours_has_a_rule() -> None:
    assert all(_rule(name) is not None for name in MODULES)
    assert "trigger.core.settings" in MODULES and "workflows.run" in MODULES
    assert {"trigger.cli", "trigger.cli.runs", "trigger.cli.logs"} <= set(MODULES)
    assert DBOS_COMPAT in MODULES and _dbos_private(MODULES[DBOS_COMPAT])

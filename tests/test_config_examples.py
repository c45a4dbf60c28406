"""Every example in config/ loads and validates, as users will copy them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CONFIG_DIR
from trigger.core.settings import load_settings
from workflows.bauplan.adapter import has_project_file

EXAMPLES = sorted(CONFIG_DIR.glob("*.toml"))


def test_there_are_examples() -> None:
    assert any(p.name == "quickstart.toml" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_loads(path: Path) -> None:
    settings = load_settings(path, environ={})
    assert settings.triggers, f"{path.name} defines no triggers"


def test_the_quickstart_runs_in_rehearsal_on_sqlite_with_real_project_folders() -> None:
    settings = load_settings(CONFIG_DIR / "quickstart.toml", environ={})
    assert settings.bauplan.mode == "rehearse"
    assert not settings.is_postgres
    assert settings.state_path == CONFIG_DIR.parent / ".bauplan-trigger"
    for trig in settings.triggers:
        assert has_project_file(settings.project_path(trig)), trig.name

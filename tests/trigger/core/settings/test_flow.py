"""Flow-control settings: per-branch limits, overrides, on_burst and debounce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import base_config, write_config
from trigger.core.errors import ConfigError
from trigger.core.settings import build_settings, load_settings
from trigger.core.settings.flow import BranchLimit, branch_flow, coalesces


def _settings(tmp_path: Path, project_dir: Path, **trigger: Any) -> Any:
    config = base_config(tmp_path, project_dir)
    config["triggers"][0].update(trigger)
    return build_settings(config, environ={})


def test_limits_load_from_toml_with_per_trigger_overrides(
    tmp_path: Path, project_dir: Path
) -> None:
    config = base_config(
        tmp_path,
        project_dir,
        queue={"per_branch_limit": {"runs": 4, "period_seconds": 60}, "global_concurrency": 8},
    )
    config["triggers"][0].update(
        per_branch_limit={"runs": 1, "period_seconds": 300}, on_burst="latest"
    )
    settings = load_settings(write_config(tmp_path / "c.toml", config), environ={})
    trig = settings.triggers[0]
    assert settings.queue.per_branch_limit == BranchLimit(runs=4, period_seconds=60)
    assert branch_flow(settings.queue, trig) == (1, BranchLimit(runs=1, period_seconds=300))
    assert branch_flow(settings.queue, None) == (1, BranchLimit(runs=4, period_seconds=60))
    assert coalesces(trig)


def test_defaults_run_every_event_without_delay(tmp_path: Path, project_dir: Path) -> None:
    trig = _settings(tmp_path, project_dir).triggers[0]
    assert trig.on_burst == "queue" and trig.debounce_seconds is None
    assert not coalesces(trig)
    assert coalesces(_settings(tmp_path, project_dir, debounce_seconds=5).triggers[0])


def test_max_wait_needs_debounce(tmp_path: Path, project_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"triggers\.orders\.max_wait_seconds = 10.*debounce"):
        _settings(tmp_path, project_dir, max_wait_seconds=10)


def test_max_wait_shorter_than_debounce_is_refused(tmp_path: Path, project_dir: Path) -> None:
    with pytest.raises(ConfigError, match="at least debounce_seconds"):
        _settings(tmp_path, project_dir, debounce_seconds=30, max_wait_seconds=10)


def test_an_unknown_burst_policy_names_the_choices(tmp_path: Path, project_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"triggers\.orders\.on_burst = 'newest'.*'latest'"):
        _settings(tmp_path, project_dir, on_burst="newest")


def test_a_rate_limit_needs_both_keys(tmp_path: Path, project_dir: Path) -> None:
    config = base_config(tmp_path, project_dir, queue={"per_branch_limit": {"runs": 2}})
    with pytest.raises(ConfigError, match=r"queue\.per_branch_limit\.period_seconds"):
        build_settings(config, environ={})

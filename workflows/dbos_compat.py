"""The private corners of DBOS we lean on, in one place.

Checked against dbos 3.4.0. DBOS does not export these names from ``dbos``; when an
upgrade moves them, this module is the one to fix, and ``tests/test_layout.py`` keeps
every other module of ours from importing ``dbos._*``.
"""

from __future__ import annotations

from dbos._dbos import _get_dbos_instance
from dbos._error import DBOSMaxStepRetriesExceeded, DBOSWorkflowIDInUseError

DBOS_VERSION_CHECKED = "3.4.0"

__all__ = [
    "DBOS_VERSION_CHECKED",
    "DBOSMaxStepRetriesExceeded",
    "DBOSWorkflowIDInUseError",
    "is_workflow_registered",
]


def is_workflow_registered(name: str) -> bool:
    """Whether the launched DBOS instance knows a workflow function by this name: a
    DBOSClient enqueue naming an unknown one is accepted and then never runs."""
    return name in _get_dbos_instance()._registry.workflow_info_map

"""The private corners of DBOS we lean on, in one place.

Checked against dbos 3.4.0. DBOS does not export these names from ``dbos``; when an
upgrade moves them, this module is the one to fix, and ``tests/test_layout.py`` keeps
every other module of ours from importing ``dbos._*``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from dbos import DBOSClient
from dbos._dbos import _get_dbos_instance
from dbos._error import DBOSMaxStepRetriesExceeded, DBOSWorkflowIDInUseError

DBOS_VERSION_CHECKED = "3.4.0"

__all__ = [
    "DBOS_VERSION_CHECKED",
    "DBOSMaxStepRetriesExceeded",
    "DBOSWorkflowIDInUseError",
    "WorkflowTable",
    "is_workflow_registered",
]


def is_workflow_registered(name: str) -> bool:
    """Whether the launched DBOS instance knows a workflow function by this name: a
    DBOSClient enqueue naming an unknown one is accepted and then never runs."""
    return name in _get_dbos_instance()._registry.workflow_info_map


class WorkflowTable:
    """DBOS's ``workflow_status`` table, for the statements the ingest writer runs in
    its own transaction next to ``DBOSClient.enqueue_in_transaction`` (DBOS offers
    no connection-taking form of them): the same tables, schema and column values
    as DBOS 3.4's ``cancel_workflows`` and ``update_workflow_attributes(merge=True)``."""

    def __init__(self, client: DBOSClient | Any) -> None:
        """``client``: a DBOSClient, or the launched DBOS instance (:meth:`launched`)."""
        self._sys_db = client._sys_db
        self.table: sa.Table = client._sys_db.tables.workflow_status
        self.is_sqlite = client._sys_db.engine.dialect.name == "sqlite"

    @classmethod
    def launched(cls) -> WorkflowTable:
        """The table as this process's launched DBOS sees it (for a workflow's steps)."""
        return cls(_get_dbos_instance())

    @property
    def engine(self) -> sa.Engine:
        """DBOS's own engine on the system database."""
        engine: sa.Engine = self._sys_db.engine
        return engine

    def update(self, *where: Any, **values: Any) -> int:
        """One UPDATE of the table, in a transaction of its own on DBOS's engine: the
        rows it changed."""
        with self.engine.begin() as conn:
            self.bind(conn)
            result = conn.execute(sa.update(self.table).where(*where).values(**values))
            return int(result.rowcount)

    def attribute(self, key: str) -> Any:
        """One top-level attribute as text (NULL when absent)."""
        column = self.table.c.attributes
        if self.is_sqlite:
            return sa.func.json_extract(column, f"$.{json.dumps(key)}")
        return column.op("->>")(key)

    def bind(self, conn: sa.Connection) -> None:
        """Point ``conn``'s statements at DBOS's schema (as enqueue_in_transaction does)."""
        self._sys_db._apply_caller_schema(conn)

    def merged(self, attributes: dict[str, Any]) -> Any:
        """The ``attributes`` column with these top-level keys merged in."""
        column = self.table.c.attributes
        if self.is_sqlite:
            value: Any = sa.case(
                (sa.func.json_type(column) == "object", column), else_=sa.literal("{}")
            )
            pairs: list[Any] = []
            for key, item in json.loads(json.dumps(attributes)).items():
                pairs += [f"$.{json.dumps(key)}", sa.func.json(json.dumps(item))]
            return sa.func.json_set(value, *pairs)
        existing = sa.case(
            (sa.func.jsonb_typeof(column) == "object", column),
            else_=sa.literal({}, type_=column.type),
        )
        return existing.op("||")(sa.literal(attributes, type_=column.type))

    @staticmethod
    def cancelled_values() -> dict[str, Any]:
        """What DBOS's cancel writes: off its queue, ended now."""
        now_ms = int(time.time() * 1000)
        return {
            "status": "CANCELLED",
            "owner_xid": None,
            "queue_name": None,
            "deduplication_id": None,
            "started_at_epoch_ms": None,
            "updated_at": now_ms,
            "completed_at": now_ms,
        }

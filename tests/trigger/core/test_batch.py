"""Group commit on a real database: groups, abandonment, failures, several writers.

The items are rows of a small table of their own on SQLite and PostgreSQL; what a
group wrote is read back after the fact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from trigger.core import db
from trigger.core.batch import Abandoned, GroupCommit

_META = sa.MetaData()
_ROWS = sa.Table("bt_test_rows", _META, sa.Column("value", sa.String(50), primary_key=True))


@pytest.fixture
def engine(backend: str | None, tmp_path: Path) -> Iterator[sa.Engine]:
    made = db.writer(backend or f"sqlite:///{tmp_path / 'batch.sqlite'}", threads=3)
    _META.create_all(made)
    yield made
    made.dispose()


def _stored(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(sa.select(_ROWS.c.value)))


class Writes:
    """A write that inserts each item, counts its groups, and can be held mid-group."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: sa.Connection, items: Sequence[str]) -> list[str | BaseException]:
        self.groups.append(list(items))
        conn.execute(sa.insert(_ROWS), [{"value": v} for v in items])
        if self.hold.is_set():
            self.hold.clear()
            self.held.set()
            self.release.wait(30)
        return list(items)


def test_items_that_wait_together_share_a_commit_and_each_caller_gets_its_own(
    engine: sa.Engine,
) -> None:
    writes = Writes()
    writer: GroupCommit[str, str] = GroupCommit(engine, writes, name="test-writer")
    writes.hold.set()
    first = writer.submit("first")
    assert writes.held.wait(30)
    rest = [writer.submit(f"v{n}") for n in range(10)]
    writes.release.set()
    assert first.result(30) == "first"
    assert [t.result(30) for t in rest] == [f"v{n}" for n in range(10)]
    assert writes.groups == [["first"], [f"v{n}" for n in range(10)]]
    assert _stored(engine) == sorted(["first", *(f"v{n}" for n in range(10))])


def test_an_item_abandoned_mid_group_is_never_committed_and_the_others_are(
    engine: sa.Engine,
) -> None:
    writes = Writes()
    writer: GroupCommit[str, str] = GroupCommit(engine, writes, name="test-writer")
    writes.hold.set()
    kept, gone = writer.submit("kept"), writer.submit("gone")
    assert writes.held.wait(30)
    with pytest.raises(Abandoned):
        gone.result(0.2)
    writes.release.set()
    assert kept.result(30) == "kept"
    assert _stored(engine) == ["kept"]
    assert writes.groups[-1] == ["kept"]  # written again without the abandoned one


def test_a_failed_group_is_written_again_carefully_so_only_the_bad_item_fails(
    engine: sa.Engine,
) -> None:
    def careful(conn: sa.Connection, items: Sequence[str]) -> list[str | BaseException]:
        out: list[str | BaseException] = []
        for value in items:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(_ROWS).values(value=value))
                out.append(value)
            except sa.exc.IntegrityError as exc:
                out.append(exc)
        return out

    with engine.begin() as conn:
        conn.execute(sa.insert(_ROWS).values(value="bad"))
    writes = Writes()  # one insert for the whole group: "bad" breaks it for all
    writer: GroupCommit[str, str] = GroupCommit(engine, writes, name="w", careful=careful)
    writes.hold.set()
    lead = writer.submit("lead")
    assert writes.held.wait(30)
    tickets = [writer.submit(v) for v in ("a", "bad", "b")]
    writes.release.set()
    assert lead.result(30) == "lead"
    assert tickets[0].result(30) == "a" and tickets[2].result(30) == "b"
    with pytest.raises(sa.exc.IntegrityError):
        tickets[1].result(30)
    assert _stored(engine) == ["a", "b", "bad", "lead"]


def test_several_writer_threads_commit_every_item_once(engine: sa.Engine) -> None:
    threads = 1 if engine.dialect.name == "sqlite" else 3
    seen: list[str] = []
    lock = threading.Lock()

    def write(conn: sa.Connection, items: Sequence[str]) -> list[str | BaseException]:
        conn.execute(sa.insert(_ROWS), [{"value": v} for v in items])
        with lock:
            seen.extend(items)
        return list(items)

    writer: GroupCommit[str, str] = GroupCommit(engine, write, name="w", threads=threads)
    values = [f"x{n}" for n in range(300)]
    results: list[Any] = []

    def send(chunk: list[str]) -> None:
        results.extend(writer.submit(v).result(60) for v in chunk)

    senders = [threading.Thread(target=send, args=(values[n::6],)) for n in range(6)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
    assert sorted(results) == sorted(values) == sorted(seen)
    assert _stored(engine) == sorted(values)

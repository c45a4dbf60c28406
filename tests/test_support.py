"""The suite's own honesty: a PostgreSQL test skips only when no server listens and CI
is not set; a server that answers but refuses us fails the test everywhere."""

from __future__ import annotations

import pytest
from psycopg.conninfo import make_conninfo

from tests.support import (
    PG_ADMIN_URL,
    _probe_postgres,
    free_port,
    postgres_verdict,
    require_postgres,
)


def test_nothing_listening_is_unreachable_and_skips_only_outside_ci() -> None:
    kind, why = _probe_postgres(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    assert kind == "unreachable", why
    assert postgres_verdict(kind, in_ci=False) == "skip"
    assert postgres_verdict(kind, in_ci=True) == "fail"


@pytest.mark.postgres
def test_a_server_that_refuses_us_fails_the_test_even_outside_ci() -> None:
    require_postgres()  # the real server must be there to refuse a role it does not have
    refused = make_conninfo(PG_ADMIN_URL, user="no_such_role_bt", password="")
    kind, why = _probe_postgres(refused)
    assert kind == "broken", why
    assert "no_such_role_bt" in why
    assert postgres_verdict(kind, in_ci=False) == "fail"
    assert postgres_verdict(kind, in_ci=True) == "fail"


def test_a_working_server_runs_the_test() -> None:
    assert postgres_verdict("ok", in_ci=True) == postgres_verdict("ok", in_ci=False) == "run"

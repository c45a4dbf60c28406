"""Shared bounds for the hypothesis property tests, so the suites fit the run's budget.

No deadline (a shared 2-core machine makes timings noise), no example database in the
worktree (a failure prints its reproducing blob instead), and function-scoped fixtures
allowed: the autouse ones only set environment variables, which every example shares.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def examples(count: int) -> settings:
    """``PROPERTY`` with ``count`` examples: for properties that cost a request each."""
    return settings(PROPERTY, max_examples=count)


# Characters that break things, drawn often: controls, line breaks, bidi overrides,
# lone surrogates (hypothesis' default text never holds one), and plain ASCII.
NASTY = "\x00\n\r\t\x1b\x7f\x85\x9b\u2028\u2029\u202e\ud800\udbff\udc00\udfff\ufffd'\"\\{}%/"
OUTSIDE_TEXT = st.text(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=40)

"""Every event source, imported once by ``serve`` so each registers its matching
filter (``trigger.matching.register_filter``) and its service component
(``trigger.service.register_component``). ``manual`` lives in matching itself."""

from __future__ import annotations

import trigger.files.source
import trigger.generic
import trigger.github
import trigger.gitlab  # noqa: F401  (GitLab push webhooks)
from trigger import (  # noqa: F401  (HTTP ingress, operator surface, cron)
    api,
    http,
    metrics,
    page,
    schedule,
)

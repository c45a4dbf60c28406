"""The ``[triggers.schedule]`` section: a cron expression, checked when the config loads.

Kept apart from the scheduler itself so that loading a config never imports DBOS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, field_validator

CatchUp = Literal["none", "latest", "all"]


class ScheduleSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str
    timezone: str | None = None
    catch_up: CatchUp = "latest"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) not in (5, 6):
            raise ValueError(
                f"has {len(fields)} fields; write 5 (minute hour day month weekday) "
                "or 6 with seconds first, e.g. '0 2 * * *' or '*/10 * * * * *'"
            )
        if not croniter.is_valid(" ".join(fields), second_at_beginning=True):
            raise ValueError("is not a valid cron expression, e.g. '0 2 * * *' for 02:00 daily")
        return " ".join(fields)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone name, e.g. 'Europe/Rome' or 'UTC'") from None
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or "UTC")

    def next_after(self, moment: datetime) -> datetime:
        it = croniter(self.cron, moment.astimezone(self.zone()), second_at_beginning=True)
        result: datetime = it.get_next(datetime)
        return result

    def ticks_between(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """Tick times in (start, end], oldest first: the newest ``limit`` of them."""
        it = croniter(self.cron, start.astimezone(self.zone()), second_at_beginning=True)
        out: list[datetime] = []
        for _ in range(1_000_000):
            moment: datetime = it.get_next(datetime)
            if moment > end:
                break
            out.append(moment)
            if len(out) > limit:
                del out[0]
        return out

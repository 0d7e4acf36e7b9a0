"""Cron schedules, as a CronJob's `spec.schedule` (evaluated on the trace's clock, UTC)."""
from __future__ import annotations

import bisect
import math
from datetime import datetime, timedelta, timezone

# A schedule that matches nothing within this many days never ticks (Feb 29 recurs within 8 years).
MAX_SCAN_DAYS = 8 * 366 + 1
_CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_MONTHS = {name: n for n, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


class CronSchedule:
    """A standard 5-field cron schedule (minute hour day-of-month month day-of-week), with
    ranges, steps, lists, names and the @-macros; day-of-month and day-of-week both restricted
    means either matches, as in cron."""

    def __init__(self, text: str):
        text = str(text).strip()
        if text.startswith(("TZ=", "CRON_TZ=")):
            text = text.split(None, 1)[1] if " " in text else ""
        text = _CRON_MACROS.get(text.lower(), text)
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"schedule {text!r} does not have 5 fields")
        bounds = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 7, _DAYS))
        self.fields = [self._parse(part, *b) for part, b in zip(parts, bounds)]
        if 7 in self.fields[4]:
            self.fields[4] = self.fields[4] | {0}
        # The seconds of the day at which it fires, on the days it fires.
        self.day_times = sorted(h * 3600 + m * 60 for h in self.fields[1] for m in self.fields[0])
        self.dom_star = parts[2] in ("*", "?")
        self.dow_star = parts[4] in ("*", "?")

    @staticmethod
    def _parse(part: str, low: int, high: int, names: dict) -> frozenset:
        values = set()
        for item in part.lower().split(","):
            base, _, step_text = item.partition("/")
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ValueError(f"bad step in {part!r}")
            if base in ("*", "?"):
                first, last = low, high
            else:
                first_text, dash, last_text = base.partition("-")
                first = names.get(first_text, None)
                first = int(first_text) if first is None else first
                last = (names.get(last_text) if last_text in names else int(last_text)) \
                    if dash else (high if step_text else first)
            if not (low <= first <= high and low <= last <= high and first <= last):
                raise ValueError(f"{part!r} is outside {low}-{high}")
            values.update(range(first, last + 1, step))
        return frozenset(values)

    def matches_day(self, day: datetime) -> bool:
        _, _, dom, month, dow = self.fields
        if day.month not in month:
            return False
        day_ok = day.day in dom
        week_ok = (day.isoweekday() % 7) in dow
        if self.dom_star or self.dow_star:
            return day_ok and week_ok
        return day_ok or week_ok

    def matches(self, moment: datetime) -> bool:
        minute, hour = self.fields[:2]
        return moment.minute in minute and moment.hour in hour and self.matches_day(moment)

    def next_after(self, ts: float, limit: float) -> float | None:
        """The first scheduled time strictly after `ts` (seconds since the epoch), up to `limit`;
        None past `limit`, past `MAX_SCAN_DAYS` days, or beyond the calendar (year 9999)."""
        first = math.floor(ts / 60.0) * 60 + 60
        try:
            day = datetime.fromtimestamp(first - first % 86400, tz=timezone.utc)
            for _ in range(MAX_SCAN_DAYS):
                day_ts = day.timestamp()
                if day_ts > limit:
                    return None
                later = bisect.bisect_left(self.day_times, first - day_ts)
                if later < len(self.day_times) and self.matches_day(day):
                    moment = day_ts + self.day_times[later]
                    return float(moment) if moment <= limit else None
                day += timedelta(days=1)
        except (OverflowError, OSError, ValueError):  # past what datetime can show
            return None
        return None

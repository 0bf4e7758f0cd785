"""Celery schedule objects for periodic task records: intervals, and crontabs in a time zone."""

import datetime
import zoneinfo

from celery.schedules import crontab, schedule

INTERVAL_UNITS = ("seconds", "minutes", "hours", "days")


def interval(number, unit):
    """Every ``number`` ``unit`` (one of :data:`INTERVAL_UNITS`)."""
    if unit not in INTERVAL_UNITS or number < 1:
        raise ValueError(f"an interval is a positive number of {', '.join(INTERVAL_UNITS)}, not {number!r} {unit!r}")
    return schedule(datetime.timedelta(**{unit: number}))


class ZonedCrontab(crontab):
    """A crontab read on the wall clock of its own time zone, whatever Celery's timezone is.

    ``0 8 * * *`` in Europe/Brussels runs at 8:00 in Brussels, summer and winter alike.
    """

    def __init__(self, minute="*", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", zone="UTC", **kw):
        super().__init__(minute, hour, day_of_week, day_of_month, month_of_year, **kw)
        self.zone = zone
        self.zone_info = zoneinfo.ZoneInfo(zone)

    def _in_zone(self, moment):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.astimezone(self.zone_info)

    def now(self):
        return self._in_zone(super().now())

    def remaining_delta(self, last_run_at, *args, **kwargs):
        return super().remaining_delta(self._in_zone(last_run_at), *args, **kwargs)

    def __eq__(self, other):
        if isinstance(other, ZonedCrontab):
            return self.zone == other.zone and super().__eq__(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"{super().__repr__()[:-1]} {self.zone}>"

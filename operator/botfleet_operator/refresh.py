"""Refreshes under the operator: when a trained request runs its job again, on new posts.

Two triggers, both checked only once the current generation has finished with a model:
a new value of the ``botfleet.dev/refresh-requested`` annotation (as ``kubectl rollout
restart`` works: any new value, once), and ``spec.refresh.schedule`` (cron or @daily...,
read in ``spec.refresh.timeZone``; the latest fire time since the last run counts once,
missed ones are not caught up). What was handled is recorded in ``status.refresh``
(never in spec), so a restarted operator does not refresh again:

* ``count``, ``generation``: the refreshes of this generation; the job of refresh N is
  named ``...-g<generation>-r<N>`` and runs with ``BOTFLEET_REFRESH=1``;
* ``trigger``: the annotation value last handled; ``scheduledAt``: the fire time last handled;
* ``lastResult``: "+N new posts (version V)" or "nothing new"; ``error``: a schedule that
  cannot be read.

Pure functions: the reconciler reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botfleet import api
from botfleet.artifacts import Result
from botfleet.errors import UserError
from botfleet.timestamps import now_iso, parse_time
from botfleet_operator.lifecycle import attempt, run_generation

REFRESH_ENV = "BOTFLEET_REFRESH"  # the job's flag: gather only what is new


class ScheduleError(UserError):
    """``spec.refresh`` names a schedule or time zone that cannot be used."""


@dataclass(frozen=True)
class RefreshDue:
    message: str  # why, for the status and the event
    state: dict  # status.refresh once the refresh starts


def _finished(body: dict) -> bool:
    status = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    return status.get("phase") in (api.PHASES[4], api.PHASES[5]) and status.get("observedGeneration") == generation


def refresh_count(body: dict) -> int:
    """Which refresh of the current run the request is on (0: its first training)."""
    state = (body.get("status") or {}).get("refresh") or {}
    return int(state.get("count") or 0) if state.get("generation") == run_generation(body) else 0


def run_tag(body: dict) -> str:
    """What names the current run's job: the run's generation (:mod:`botfleet_operator.lifecycle`),
    ``-r<N>`` for its Nth refresh and ``-a<N>`` for its Nth retry."""
    count, retry = refresh_count(body), attempt(body)
    return f"{run_generation(body)}" + (f"-r{count}" if count else "") + (f"-a{retry}" if retry else "")


def last_fire_time(schedule: str, time_zone: str, now: datetime) -> datetime:
    """The schedule's latest fire time at or before ``now`` (raises ScheduleError)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter

    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"spec.refresh.timeZone: unknown time zone {time_zone!r} (e.g. Europe/Paris)") from None
    if not croniter.is_valid(schedule):
        raise ScheduleError(f"spec.refresh.schedule: {schedule!r} is not a cron schedule (e.g. '0 3 * * *', @daily)")
    after_now = now.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)  # get_prev is strictly before
    return croniter(schedule, after_now).get_prev(datetime).astimezone(UTC)


def refresh_due(body: dict, now: datetime | None = None) -> RefreshDue | None:
    """Whether a refresh should start now, and the status.refresh it starts with. Only a
    finished request that has a model (status.history) is refreshed. Raises ScheduleError."""
    status = body.get("status") or {}
    if not _finished(body) or not status.get("history"):
        return None
    now = now or datetime.now(UTC)
    state = {k: v for k, v in (status.get("refresh") or {}).items() if k in ("trigger", "scheduledAt")}
    state.update(generation=run_generation(body), count=refresh_count(body) + 1)
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(api.REFRESH_ANNOTATION)
    if value and value != (status.get("refresh") or {}).get("trigger"):
        return RefreshDue(f"refresh requested ({api.REFRESH_ANNOTATION}: {value})", {**state, "trigger": value})
    settings = (body.get("spec") or {}).get("refresh") or {}
    if not settings.get("schedule"):
        return None
    fire = last_fire_time(settings["schedule"], settings.get("timeZone") or "UTC", now)
    since = [t for t in (parse_time(state.get("scheduledAt")), parse_time(status.get("completionTime"))) if t]
    if since and fire <= max(since):
        return None
    return RefreshDue(
        f"scheduled refresh ({settings['schedule']}, due {now_iso(fire)})", {**state, "scheduledAt": now_iso(fire)}
    )


def wants_refresh(body: dict) -> bool:
    """Whether a reconcile has a refresh to start, or a new schedule error to report."""
    try:
        return refresh_due(body) is not None
    except ScheduleError as exc:
        return ((body.get("status") or {}).get("refresh") or {}).get("error") != str(exc)


def refresh_status(old: dict, result: Result | None, finished: bool) -> dict | None:
    """status.refresh carried over, with the outcome of a finished refresh."""
    state = old.get("refresh")
    if not state:
        return None
    state = dict(state)
    if finished and result is not None and result.succeeded and result.new_posts is not None:
        state["lastResult"] = outcome(result)
    return state


def outcome(result: Result) -> str:
    if not result.new_posts:
        return f"nothing new: version {result.version} stays"
    return f"+{result.new_posts} new posts: version {result.version}"

"""The operator's refresh decisions (pure): triggers, schedules in a time zone, job names."""

from datetime import UTC, datetime

import pytest

from botfleet import api
from botfleet_operator import rayjob as render
from botfleet_operator.executors import KubeRayExecutor, RayExecutor
from botfleet_operator.refresh import REFRESH_ENV, ScheduleError, last_fire_time, refresh_due, run_tag
from botfleet_operator.settings import Settings
from tests.fixtures.bot_requests import body

SUCCEEDED = {"phase": "Succeeded", "observedGeneration": 1, "history": [{"version": 1}]}


def trained(refresh=None, annotation=None, status=None):
    doc = body(
        spec={
            "handles": [{"handle": "a", "source": {"mastodon": {"instance": "https://m.x"}}}],
            "output": {"uri": "s3://bots/"},
            "refresh": refresh or {},
        },
        status={**SUCCEEDED, "completionTime": "2026-01-02T10:00:00Z", **(status or {})},
    )
    if annotation:
        doc["metadata"]["annotations"] = {api.REFRESH_ANNOTATION: annotation}
    return doc


def test_a_schedule_is_read_in_its_time_zone():
    now = datetime(2026, 1, 2, 19, 30, tzinfo=UTC)  # 04:30 on Jan 3 in Tokyo
    assert last_fire_time("0 3 * * *", "Asia/Tokyo", now) == datetime(2026, 1, 2, 18, 0, tzinfo=UTC)
    assert last_fire_time("@weekly", "UTC", now) == datetime(2025, 12, 28, tzinfo=UTC)  # Sunday midnight
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        last_fire_time("@daily", "Mars/Olympus", now)
    with pytest.raises(ScheduleError, match="not a cron schedule"):
        last_fire_time("99 * * * *", "UTC", now)


def test_a_scheduled_refresh_is_due_once_per_fire_time():
    doc = trained({"schedule": "0 3 * * *", "timeZone": "UTC"})
    assert refresh_due(doc, datetime(2026, 1, 3, 2, 59, tzinfo=UTC)) is None  # finished after the last 03:00
    due = refresh_due(doc, datetime(2026, 1, 3, 3, 0, tzinfo=UTC))
    assert due.state == {"generation": 1, "count": 1, "scheduledAt": "2026-01-03T03:00:00Z"}
    handled = trained(
        {"schedule": "0 3 * * *"}, status={"refresh": due.state, "completionTime": "2026-01-03T03:20:00Z"}
    )
    assert refresh_due(handled, datetime(2026, 1, 3, 23, 0, tzinfo=UTC)) is None
    # Two days missed (no operator ran): one refresh, not two.
    late = refresh_due(handled, datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    assert late.state["scheduledAt"] == "2026-01-05T03:00:00Z" and late.state["count"] == 2


def test_the_annotation_triggers_once_per_value_and_only_a_trained_bot():
    now = datetime(2026, 1, 3, tzinfo=UTC)
    assert refresh_due(trained(annotation="a"), now).state["trigger"] == "a"
    handled = {"refresh": {"generation": 1, "count": 1, "trigger": "a"}}
    assert refresh_due(trained(annotation="a", status=handled), now) is None
    assert refresh_due(trained(annotation="b", status=handled), now).state["count"] == 2
    assert refresh_due(trained(annotation="a", status={"phase": "Training"}), now) is None
    assert refresh_due(trained(annotation="a", status={"history": None}), now) is None  # never trained


def test_a_refresh_has_its_own_job_and_tells_the_job():
    doc = trained(status={"refresh": {"generation": 1, "count": 2}})
    assert run_tag(doc) == "1-r2" and run_tag(trained()) == "1"
    assert run_tag({**doc, "metadata": {**doc["metadata"], "generation": 2}}) == "2"  # a new spec: no refresh
    settings = Settings(job_image="img:1")
    assert KubeRayExecutor(settings, None).name(doc) == "alice-g1-r2"
    assert RayExecutor(settings, None, {}).name(doc).endswith("-g1-r2")
    env = render.render_rayjob(doc, render.resolve_spec(doc, settings), settings)
    assert env["metadata"]["name"] == "alice-g1-r2"  # the name the executor observes
    assert f'"name": "{REFRESH_ENV}"' in str(env).replace("'", '"')
    assert REFRESH_ENV not in str(render.render_rayjob(trained(), render.resolve_spec(trained(), settings), settings))
    assert render.ray_job_env(doc, render.resolve_spec(doc, settings), {}, {})[REFRESH_ENV] == "1"

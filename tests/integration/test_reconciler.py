"""The reconciler on its own: one BotRequest reconciled against a real S3 server, with the
status patches recorded instead of sent and a stand-in for the executor that keeps Ray's job
states in a dict. Only ``Reconciler(settings, executor, storage, patch_status, request_uid)``
and ``reconcile(body, entries)`` are used; the job's files are written where the job writes
them (botfleet.layout), in the shapes it writes.
"""

from __future__ import annotations

import pytest

from botfleet import api
from botfleet.artifacts import data_fingerprint
from botfleet.layout import Layout
from botfleet_operator.observation import observe_ray_job  # how the ray executor reads Ray's job states
from botfleet_operator.reconciler import Reconciler
from botfleet_operator.refresh import run_tag
from botfleet_operator.settings import Settings

NAMESPACE = "bots"


class RayJobsStandIn:
    """Stand-in for the ray executor: each job's Ray status (PENDING, RUNNING, SUCCEEDED,
    FAILED) by name, set by the test; every start is recorded."""

    kind = "ray"

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.started: list[str] = []
        self.stop_asks = 1  # how many delete() calls a running job takes to be gone (Ray stops it async)

    def name(self, body: dict) -> str:
        meta = body["metadata"]
        return f"{meta['namespace']}-{meta['name']}-{meta['generation']}"

    def observe(self, body: dict, name: str):
        return observe_ray_job(name, self.states.get(name))

    def submit(self, body: dict, spec):
        name = self.name(body)
        self.started.append(name)
        self.states.setdefault(name, "PENDING")
        return self.observe(body, name)

    def delete(self, body: dict, name: str) -> bool:
        if self.states.get(name) in ("PENDING", "RUNNING"):
            self.stop_asks -= 1
            if self.stop_asks > 0:
                return False
        self.states.pop(name, None)
        return True

    resumes_in_place = False  # as Ray: a stopped job cannot go on

    def suspend(self, body: dict, name: str) -> bool:
        """As Ray stops a job: asynchronously, leaving it STOPPED."""
        if self.states.get(name) in ("PENDING", "RUNNING"):
            self.states[name] = "STOPPED"
            return False
        return True

    def resume(self, body: dict, name: str) -> None:
        pass


def merged(old: dict, patch: dict) -> dict:
    """A JSON merge patch applied (RFC 7386), as the API server stores a status patch."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class RayJobsByRunTag(RayJobsStandIn):
    """The stand-in, naming jobs as the real executors do: by the run's generation, refresh
    and retry (botfleet_operator.refresh.run_tag)."""

    def name(self, body: dict) -> str:
        meta = body["metadata"]
        return f"{meta['namespace']}-{meta['name']}-{run_tag(body)}"


class World:
    """The BotRequests as the API server holds them (status patches applied), the recorded
    patches, the stand-in executor, and one Reconciler wired to them and to real S3."""

    def __init__(self, storage) -> None:
        self.storage = storage
        self.executor = RayJobsStandIn()
        self.patches: list[tuple[str, dict]] = []  # (name, merge patch of its status), in order
        self.requests: dict[str, dict] = {}  # name -> body
        settings = Settings(executor="ray", backoff_limit=0)  # a failure ends Failed, unless a test says otherwise
        self.reconciler = Reconciler(settings, self.executor, storage, self.patch_status, self.request_uid)

    def patch_status(self, namespace: str, name: str, patch: dict) -> None:
        assert namespace == NAMESPACE
        self.patches.append((name, patch))
        body = self.requests[name]
        body["status"] = merged(body.get("status") or {}, patch)

    def request_uid(self, namespace: str, name: str) -> str | None:
        body = self.requests.get(name) if namespace == NAMESPACE else None
        return body["metadata"]["uid"] if body else None

    def create(self, name: str) -> dict:
        self.requests[name] = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {
                "namespace": NAMESPACE,
                "name": name,
                "uid": f"uid-{name}",
                "generation": 1,
                "creationTimestamp": f"2026-01-01T00:00:0{len(self.requests)}Z",
            },
            "spec": {
                "handles": [{"handle": "alice", "source": {"dataset": {"uri": "s3://inputs/alice.jsonl"}}}],
                "output": {"uri": self.storage.uri("bots")},
            },
        }
        return self.requests[name]

    def reconcile(self, name: str) -> dict:
        """Reconcile the request as stored; its status afterwards."""
        self.reconciler.reconcile(self.requests[name], [])  # []: the queue shows no other request
        return self.requests[name]["status"]

    def patches_of(self, name: str) -> list[dict]:
        return [patch for who, patch in self.patches if who == name]

    def layout(self, name: str) -> Layout:
        return Layout(api.parse_spec(self.requests[name]["spec"]).model_uri)


@pytest.fixture
def world(storage) -> World:
    return World(storage)


def write_stats(world: World, name: str) -> None:
    """data/stats.json as the data stage writes it last, for this spec's data."""
    spec = api.parse_spec(world.requests[name]["spec"])
    world.storage.write_json(
        world.layout(name).stats,
        {
            "model_id": spec.model_id,
            "handles": {"alice": {"downloaded": 120, "retweets": 10, "short": 10, "kept": 100}},
            "epochs": 4,
            "seed": 42,
            "fingerprint": data_fingerprint(spec),
        },
    )


def test_a_new_request_gets_a_job_and_a_launching_status(world):
    world.create("alice")
    status = world.reconcile("alice")
    (job,) = world.executor.started
    first = world.patches_of("alice")[0]
    assert (first["phase"], first["reason"]) == ("Pending", "Launching")
    assert status["phase"] == "Pending" and status["job"]["name"] == job
    assert world.storage.exists(world.layout("alice").owner), "the request claims its output folder"


def test_reconciling_again_with_nothing_changed_writes_no_patch(world):
    world.create("alice")
    world.reconcile("alice")
    before = list(world.patches)
    assert before
    world.reconcile("alice")
    world.reconcile("alice")
    assert world.patches == before
    assert len(world.executor.started) == 1


def test_the_job_files_map_to_training_then_succeeded(world):
    world.create("alice")
    world.reconcile("alice")
    (job,) = world.executor.started
    layout = world.layout("alice")
    world.executor.states[job] = "RUNNING"
    assert world.reconcile("alice")["phase"] == "PreparingData"

    write_stats(world, "alice")
    status = world.reconcile("alice")
    assert (status["phase"], status["reason"]) == ("Training", "TrainingStarting")
    assert status["keptPosts"] == 100

    world.storage.write_json(layout.progress, {"step": 3, "total_steps": 10, "epoch": 1.2, "loss": 2.5})
    status = world.reconcile("alice")
    assert (status["phase"], status["reason"]) == ("Training", "Training")
    assert status["progress"]["step"] == 3 and status["progress"]["totalSteps"] == 10

    world.storage.write_json(layout.model_config, {"model_type": "gpt2"})
    world.storage.write_text(layout.card, "# alice\n")
    world.storage.write_json(layout.result, {"status": "succeeded", "model": f"{layout.model}/", "card": layout.card})
    world.executor.states[job] = "SUCCEEDED"
    status = world.reconcile("alice")
    assert (status["phase"], status["reason"]) == ("Succeeded", "Succeeded")
    assert status["artifacts"]["card"] == layout.card and status["completionTime"]
    assert world.executor.started == [job]


def test_a_failed_result_maps_to_failed_with_its_message(world):
    world.create("alice")
    world.reconcile("alice")
    (job,) = world.executor.started
    write_stats(world, "alice")
    error = "CUDA out of memory: 4 GiB more were needed"
    world.storage.write_json(world.layout("alice").result, {"status": "failed", "stage": "training", "error": error})
    world.executor.states[job] = "FAILED"
    status = world.reconcile("alice")
    assert status["phase"] == "Failed" and status["message"] == error


def test_a_second_request_for_the_same_output_waits_in_output_in_use(world):
    world.create("alice")
    world.reconcile("alice")
    world.create("alice-again")  # same handles, same output: the same folder
    assert world.layout("alice-again") == world.layout("alice")
    status = world.reconcile("alice-again")
    assert (status["phase"], status["reason"]) == ("Pending", "OutputInUse")
    assert f"{NAMESPACE}/alice" in status["message"]
    assert world.storage.read_json(world.layout("alice").owner)["name"] == "alice"
    assert world.executor.started == [world.executor.name(world.requests["alice"])]


def test_a_superseded_job_is_gone_before_the_new_generation_starts(world):
    """A spec change while a job runs: the new generation waits until the old job has
    stopped (Ray stops it asynchronously), so nothing of it writes into the new run."""
    body = world.create("alice")
    world.reconcile("alice")
    world.executor.states["bots-alice-1"] = "RUNNING"
    world.storage.write_json(f"{world.layout('alice').model_uri}/progress.json", {"step": 1, "total_steps": 9})
    world.executor.stop_asks = 3  # gone on the third ask
    body["metadata"]["generation"] = 2
    body["spec"]["training"] = {"epochs": 2}

    outcomes = [world.reconciler.reconcile(body, []) for _ in range(2)]
    assert world.executor.started == ["bots-alice-1"]  # not yet: the old job still stops
    assert body["status"]["job"]["name"] == "bots-alice-1" and body["status"]["observedGeneration"] == 1
    assert world.storage.exists(f"{world.layout('alice').model_uri}/progress.json")  # its files untouched
    assert [e[1] for e in outcomes[0].events] == ["Superseded"] and outcomes[1].events == []

    status = world.reconcile("alice")  # the third ask: gone
    assert world.executor.started == ["bots-alice-1", "bots-alice-2"]
    assert status["job"]["name"] == "bots-alice-2" and status["observedGeneration"] == 2
    assert not world.storage.exists(f"{world.layout('alice').model_uri}/progress.json")

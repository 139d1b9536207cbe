"""The reconciler on its own: one BotRequest reconciled against a real S3 server, in the
world of tests/fixtures/reconciler_world.py (status patches recorded, a stand-in executor).
"""

from __future__ import annotations

from tests.fixtures.reconciler_world import NAMESPACE, write_stats


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

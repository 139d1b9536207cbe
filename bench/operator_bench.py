"""Operator: 200 BotRequests created at once (executor kuberay), against a plain baseline.

botfleet: ``botfleet operator`` (``python -m botfleet_operator``, no concurrency limit)
watching the real control plane (tests/cluster/controlplane.py, KubeRay's real CRDs) with a
real (embedded) S3 server; 200 BotRequests are created at once by 16 client threads and
we time until every one has its RayJob (then its status, then its event), and each
request's latency from its create call returning to its RayJob arriving on a watch.
Reconcile latency p50/p99 come from the operator's own histogram (/metrics), its peak
memory from /proc (VmHWM).

Baseline: the same 200 RayJobs (the operator's own rendering) created directly by the same
16 client threads: the API server's speed for those writes, with no operator. Rounds
alternate between the two, each in a fresh namespace.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import statistics
import threading
import time
import uuid

REQUESTS = int(os.environ.get("BOTFLEET_BENCH_OPERATOR_REQUESTS", "200"))
ROUNDS = int(os.environ.get("BOTFLEET_BENCH_OPERATOR_ROUNDS", "2"))
THREADS = 16


def _request(i: int, namespace: str) -> dict:
    # Each round writes under its own prefix: a later round's request with a name of an
    # earlier round's would otherwise find the folder owned by it (OutputInUse) until that
    # round's namespace is deleted, and wait for that instead of being measured.
    return {
        "metadata": {"name": f"bot-{i:04d}"},
        "spec": {
            "handles": [{"handle": f"user{i}", "source": {"bluesky": {}}}],
            "output": {"uri": f"s3://bench/{namespace}"},
        },
    }


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            width = count - previous_count
            return previous_le + (le - previous_le) * ((rank - previous_count) / width if width else 0)
        previous_le, previous_count = le, count
    return None


def _histogram(text: str, name: str) -> list[tuple[float, float]]:
    out = []
    for match in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M):
        out.append((float(match.group(1)), float(match.group(2))))
    return sorted(out)


def _watch_rayjobs(kube, namespace: str, arrivals: dict, stop: threading.Event, ready: threading.Event) -> None:
    from kubernetes import watch

    w = watch.Watch()
    ready.set()
    for event in w.stream(
        kube.custom.list_namespaced_custom_object, "ray.io", "v1", namespace, "rayjobs", timeout_seconds=300
    ):
        name = event["object"]["metadata"]["name"]
        arrivals.setdefault(name, time.perf_counter())
        if stop.is_set() or len(arrivals) >= REQUESTS:
            w.stop()
            break


def _round_baseline(kube) -> dict:
    from botfleet_operator.rayjob import render_rayjob, resolve_spec
    from botfleet_operator.settings import Settings

    namespace = _namespace(kube)
    settings = Settings()
    bodies = []
    for i in range(REQUESTS):
        body = {"apiVersion": "botfleet.dev/v1alpha1", "kind": "BotRequest", **_request(i, namespace)}
        body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), generation=1)
        bodies.append(render_rayjob(body, resolve_spec(body, settings), settings))
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        list(
            pool.map(
                lambda m: kube.custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", m), bodies
            )
        )
    seconds = time.perf_counter() - start
    _drop(kube, namespace)
    return {"seconds_all_rayjobs": seconds}


def _round_botfleet(kube, s3_env: dict, tmp: str) -> dict:
    from tests.fixtures.cluster import OperatorProcess, wait_for

    namespace = _namespace(kube)
    log = os.path.join(tmp, f"operator-{namespace}.log")
    op = OperatorProcess(
        kube,
        ["--executor", "kuberay", "--namespaces", namespace, "--max-concurrent", "0", "--log-level", "WARNING"],
        s3_env,
        __import__("pathlib").Path(log),
    )
    op.start()
    try:
        arrivals: dict[str, float] = {}
        created: dict[str, float] = {}
        stop, ready = threading.Event(), threading.Event()
        watcher = threading.Thread(target=_watch_rayjobs, args=(kube, namespace, arrivals, stop, ready), daemon=True)
        watcher.start()
        ready.wait(10)
        time.sleep(0.5)  # the watch is established

        def create(i: int) -> None:
            kube.create_request(namespace, _request(i, namespace))
            created[f"bot-{i:04d}-g1"] = time.perf_counter()

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(create, range(REQUESTS)))
        created_seconds = time.perf_counter() - start
        wait_for(lambda: len(arrivals) >= REQUESTS, 600, 0.05, f"{REQUESTS} RayJobs")
        all_seconds = max(arrivals.values()) - start

        def statuses_written():
            items = kube.custom.list_namespaced_custom_object("botfleet.dev", "v1alpha1", namespace, "botrequests")[
                "items"
            ]
            return sum(1 for r in items if (r.get("status") or {}).get("job", {}).get("name")) >= REQUESTS

        wait_for(statuses_written, 600, 0.2, "every status")
        status_seconds = time.perf_counter() - start
        # Events are posted after the reconciles, by a thread of their own: one JobCreated each.
        wait_for(lambda: sum(_event_reasons(kube, namespace).values()) >= REQUESTS, 600, 0.2, "every event")
        event_seconds = time.perf_counter() - start
        latencies = sorted(max(0.0, arrivals[name] - created[name]) for name in created if name in arrivals)
        text = op.metrics()
        buckets = _histogram(text, "botfleet_reconcile_duration_seconds")
        count = re.search(r"^botfleet_reconcile_duration_seconds_count ([0-9.e+]+)$", text, re.M)
        triggers = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^botfleet_reconciles_total{trigger="([^"]+)"} ([0-9.e+]+)$', text, re.M)
        }
        stop.set()
        return {
            "seconds_all_created": created_seconds,
            "seconds_all_rayjobs": all_seconds,
            "seconds_all_statuses": status_seconds,
            "seconds_all_events": event_seconds,
            "create_to_rayjob_p50": latencies[len(latencies) // 2],
            "create_to_rayjob_p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "reconcile_p50": _quantile(buckets, 0.5),
            "reconcile_p99": _quantile(buckets, 0.99),
            "reconciles": float(count.group(1)) if count else None,
            "reconciles_by_trigger": triggers,
            "events_by_reason": _event_reasons(kube, namespace),
            "peak_rss_mib": op.peak_rss_mib(),
        }
    finally:
        op.stop()
        _drop(kube, namespace)


def _event_reasons(kube, namespace: str) -> dict[str, int]:
    """How many Events of each reason the operator posted in the round's namespace."""
    reasons: dict[str, int] = {}
    for event in kube.core.list_namespaced_event(namespace).items:
        reasons[event.reason] = reasons.get(event.reason, 0) + 1
    return reasons


def _namespace(kube) -> str:
    from kubernetes import client

    name = "bench-" + uuid.uuid4().hex[:8]
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _drop(kube, namespace: str) -> None:
    try:
        kube.core.delete_namespace(namespace)
    except Exception:  # noqa: BLE001
        pass


def run() -> dict:
    import tempfile

    import yaml
    from kubernetes import config

    from botfleet.embedded_s3 import EmbeddedS3
    from botfleet.storage import Storage
    from tests.cluster.controlplane import ControlPlane, downgrade_crd_for_k8s_1_20, install_crds, install_kuberay_crds
    from tests.fixtures.cluster import BOTFLEET_CRD, Kube

    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as cp, EmbeddedS3() as server:
        os.environ["KUBECONFIG"] = cp.kubeconfig
        install_crds(cp.kubeconfig, [downgrade_crd_for_k8s_1_20(yaml.safe_load(BOTFLEET_CRD.read_text()))])
        install_kuberay_crds(cp.kubeconfig)
        Storage(server.config).ensure_bucket("bench")
        api_client = config.new_client_from_config(config_file=cp.kubeconfig)
        api_client.configuration.connection_pool_maxsize = THREADS
        kube = Kube(cp.kubeconfig, cp.server, api_client)
        rounds: dict[str, list[dict]] = {"botfleet": [], "baseline": []}
        for _ in range(ROUNDS):
            rounds["baseline"].append(_round_baseline(kube))
            rounds["botfleet"].append(_round_botfleet(kube, server.config.to_env(), tmp))
        api_client.close()

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in rounds[name] if r.get(key) is not None]
        return statistics.median(values) if values else None

    ours, base = median("botfleet", "seconds_all_rayjobs"), median("baseline", "seconds_all_rayjobs")
    return {
        "benchmark": f"operator ({REQUESTS} BotRequests at once, executor kuberay, real control plane)",
        "seconds_until_every_rayjob": {"botfleet": round(ours, 2), "baseline_direct_creates": round(base, 2)},
        "ratio_botfleet_to_baseline": round(ours / base, 2),
        "seconds_until_every_status": round(median("botfleet", "seconds_all_statuses"), 2),
        "seconds_until_every_event": round(median("botfleet", "seconds_all_events"), 2),
        "create_to_rayjob_seconds": {
            "p50": round(median("botfleet", "create_to_rayjob_p50"), 3),
            "p99": round(median("botfleet", "create_to_rayjob_p99"), 3),
        },
        "reconcile_seconds": {
            "p50": round(median("botfleet", "reconcile_p50"), 4),
            "p99": round(median("botfleet", "reconcile_p99"), 4),
        },
        "operator_peak_rss_mib": round(max(r["peak_rss_mib"] or 0 for r in rounds["botfleet"]), 1),
        "rounds": ROUNDS,
        "raw": rounds,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

"""The chart's serving (charts/botfleet/templates/rayservice.yaml, values `serving`), offline:
the RayService with kuberay, the operator's serving settings with either executor, and the
Serve application the chart runs being the one the operator deploys with the ray executor.
On the real control plane against KubeRay's RayService CRD: tests/integration/test_serving_cluster.py.
"""

from __future__ import annotations

import yaml

from botfleet_operator.serving import serve_application
from botfleet_operator.settings import Settings
from tests.fixtures.manifests import VALUE_SETS, chart_settings, find, render

RAY = {"executor": {"type": "ray", "ray": {"address": "http://raycluster-head-svc.ray:8265"}}}


def rayservice(tmp_path, values: dict) -> dict:
    (service,) = find(render(tmp_path, values), "RayService")
    return service


def test_serving_is_off_by_default(tmp_path):
    assert find(render(tmp_path, {}), "RayService") == []
    assert chart_settings(tmp_path, {}).serving_catalog == ""


def test_the_rayservice_runs_the_application_the_operator_would_deploy(tmp_path):
    values = VALUE_SETS["serving"]
    settings = chart_settings(tmp_path, values)
    service = rayservice(tmp_path, values)
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == {"applications": [serve_application(settings)]}
    assert settings.serving_catalog == "s3://bots/.botfleet/serving-catalog.json"
    assert settings.serving_models_per_replica == 4 and settings.serving_replica_gpus == 1
    # The status points at the Service KubeRay makes for the RayService's Serve port.
    assert settings.serving_endpoint == f"http://{service['metadata']['name']}-serve-svc.botfleet.svc:8000/v1"
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == Settings().ray_version


def test_the_rayservice_pods_are_shaped_like_the_training_pods(tmp_path):
    values = VALUE_SETS["serving"]
    cluster = rayservice(tmp_path, values)["spec"]["rayClusterConfig"]
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    (group,) = cluster["workerGroupSpecs"]
    worker_pod = group["template"]["spec"]
    (head,), (worker,) = head_pod["containers"], worker_pod["containers"]
    for pod, container in ((head_pod, head), (worker_pod, worker)):
        assert container["image"] == "botfleet/job:0.1.0"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["imagePullSecrets"] == [{"name": "registry"}]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "botfleet-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
        (mount,) = container["volumeMounts"]
        assert env["BOTFLEET_S3_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
        assert pod["volumes"] == [{"name": mount["name"], "secret": {"secretName": "s3-ca"}}]
    assert {p["name"]: p["containerPort"] for p in head["ports"]}["serve"] == 8000
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # replicas go to the workers
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1" and group["rayStartParams"]["num-gpus"] == "1"
    assert cluster["enableInTreeAutoscaling"] is True
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 2)


def test_worker_pod_values_replace_the_pod_values_field_by_field(tmp_path):
    values = {
        "serving": {"enabled": True},
        "job": {"pod": {"nodeSelector": {"pool": "cpu"}}, "workerPod": {"nodeSelector": {"pool": "gpu"}}},
    }
    cluster = rayservice(tmp_path, values)["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}
    worker_pod = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert worker_pod["nodeSelector"] == {"pool": "gpu"} and worker_pod["securityContext"]["runAsNonRoot"] is True


def test_with_the_ray_executor_the_operator_deploys_and_the_chart_renders_no_rayservice(tmp_path):
    values = {**RAY, "serving": {"enabled": True, "catalog": "s3://fleet/serving.json"}}
    assert find(render(tmp_path, values), "RayService") == []
    settings = chart_settings(tmp_path, values)
    assert settings.serving_catalog == "s3://fleet/serving.json"
    # Serve's HTTP proxy listens on port 8000 of the cluster whose dashboard is at :8265.
    assert settings.serving_endpoint == "http://raycluster-head-svc.ray:8000/v1"
    endpoint = {**values, "serving": {**values["serving"], "endpoint": "https://bots.example.com/v1"}}
    assert chart_settings(tmp_path, endpoint).serving_endpoint == "https://bots.example.com/v1"


def test_the_serving_cluster_is_locked_like_the_training_clusters(tmp_path):
    values = VALUE_SETS["serving"]
    cluster = rayservice(tmp_path, values)["spec"]["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token"}
    named = {**values, "job": {"rayAuth": {"mode": "token", "secretName": "ray-token"}}}
    assert rayservice(tmp_path, named)["spec"]["rayClusterConfig"]["authOptions"] == {
        "mode": "token",
        "secretName": "ray-token",
    }
    opted_out = {**values, "job": {"rayAuth": {"mode": "disabled"}}}
    assert "authOptions" not in rayservice(tmp_path, opted_out)["spec"]["rayClusterConfig"]

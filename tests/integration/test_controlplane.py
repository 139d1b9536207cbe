"""The real Kubernetes 1.20 test control plane (tests/cluster/controlplane.py) works:
namespaces, structural CRD validation, the real KubeRay CRDs, garbage collection."""

import time
import uuid

import pytest

from tests.cluster.controlplane import ControlPlane, install_crds, install_kuberay_crds

pytestmark = pytest.mark.cluster

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


@pytest.fixture(scope="module")
def control_plane():
    cp = ControlPlane().start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def api_client(control_plane):
    c = config.new_client_from_config(config_file=control_plane.kubeconfig)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def namespace(api_client):
    name = "cp-test-" + uuid.uuid4().hex[:8]
    client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def wait_for(predicate, timeout=60.0, what="condition"):
    """Poll predicate() until truthy; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def test_namespace_created(api_client, namespace):
    ns = client.CoreV1Api(api_client).read_namespace(namespace)
    assert ns.status.phase == "Active"


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.botfleet.io"},
    "spec": {
        "group": "test.botfleet.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_structural_crd_validation_and_status(control_plane, api_client, namespace):
    install_crds(control_plane.kubeconfig, [WIDGET_CRD])
    co = client.CustomObjectsApi(api_client)
    args = ("test.botfleet.io", "v1", namespace, "widgets")

    created = co.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": "test.botfleet.io/v1",
            "kind": "Widget",
            "metadata": {"name": "ok"},
            "spec": {"size": 3, "unknownField": "pruned"},
        },
    )
    assert created["spec"] == {"size": 3, "color": "red"}  # defaulted and pruned

    # status subresource: main resource writes ignore status, /status writes it
    patched = co.patch_namespaced_custom_object_status(*args, "ok", {"status": {"phase": "Ready"}})
    assert patched["status"] == {"phase": "Ready"}

    for bad_spec in ({"size": 0}, {"size": "three"}, {"color": "blue"}, {"size": 2, "color": "green"}):
        with pytest.raises(ApiException) as exc:
            co.create_namespaced_custom_object(
                *args,
                {
                    "apiVersion": "test.botfleet.io/v1",
                    "kind": "Widget",
                    "metadata": {"name": "bad"},
                    "spec": bad_spec,
                },
            )
        assert exc.value.status == 422, (bad_spec, exc.value.body)


def _rayjob(name, **spec_overrides):
    spec = {
        "entrypoint": "python -c 'print(1)'",
        "shutdownAfterJobFinishes": True,
        "rayClusterSpec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.9.0"}]}},
            },
        },
    }
    spec.update(spec_overrides)
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name}, "spec": spec}


def test_kuberay_crds_validate_rayjobs(control_plane, api_client, namespace):
    names = install_kuberay_crds(control_plane.kubeconfig)
    assert set(names) == {"rayjobs.ray.io", "rayclusters.ray.io", "rayservices.ray.io"}
    co = client.CustomObjectsApi(api_client)
    args = ("ray.io", "v1", namespace, "rayjobs")

    created = co.create_namespaced_custom_object(*args, _rayjob("good"))
    assert created["spec"]["submissionMode"] == "K8sJobMode"  # schema default applied

    bad = [
        _rayjob("bad-type", shutdownAfterJobFinishes="yes"),
        _rayjob("bad-int", ttlSecondsAfterFinished="soon"),
        _rayjob("bad-required", rayClusterSpec={"workerGroupSpecs": []}),
    ]
    for obj in bad:
        with pytest.raises(ApiException) as exc:
            co.create_namespaced_custom_object(*args, obj)
        assert exc.value.status == 422, (obj["metadata"]["name"], exc.value.body)


def test_garbage_collection_of_owned_configmap(api_client, namespace):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "1"})
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="child",
                owner_references=[
                    client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
                ],
            ),
            data={"b": "2"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace, body=client.V1DeleteOptions(propagation_policy="Background"))

    def child_gone():
        try:
            core.read_namespaced_config_map("child", namespace)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(child_gone, timeout=60, what="garbage collection of the child ConfigMap")


def test_garbage_collection_of_objects_owned_by_a_new_crd(control_plane, api_client, namespace):
    """A custom object of a just-installed CRD owning a ConfigMap: the patched
    controller-manager re-reads discovery every 5 s (upstream: 30 s), so the cascade
    happens within seconds rather than up to ~40 s."""
    crd = {
        **WIDGET_CRD,
        "metadata": {"name": "gadgets.test.botfleet.io"},
        "spec": {
            **WIDGET_CRD["spec"],
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
        },
    }
    install_crds(control_plane.kubeconfig, [crd])
    co = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    owner = co.create_namespaced_custom_object(
        "test.botfleet.io",
        "v1",
        namespace,
        "gadgets",
        {"apiVersion": "test.botfleet.io/v1", "kind": "Gadget", "metadata": {"name": "owner"}, "spec": {"size": 1}},
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="gadget-child",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="test.botfleet.io/v1", kind="Gadget", name="owner", uid=owner["metadata"]["uid"]
                    )
                ],
            )
        ),
    )
    t0 = time.monotonic()
    co.delete_namespaced_custom_object(
        "test.botfleet.io", "v1", namespace, "gadgets", "owner", propagation_policy="Background"
    )

    def child_gone():
        try:
            core.read_namespaced_config_map("gadget-child", namespace)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(child_gone, timeout=90, what="garbage collection of a ConfigMap owned by a Gadget")
    assert time.monotonic() - t0 < 25, "GC discovery resync patch not effective?"

"""The chart's fleet page, offline (rendered as tests/unit/test_chart.py renders the chart):
off by default; when on, a Deployment from the operator image with its own ServiceAccount
that may only list BotRequests and Events, a Service, an optional Ingress, the token from
a Secret. The page's Kubernetes calls, read from its code, are the ones granted.
"""

from __future__ import annotations

import re

import pytest

from tests.fixtures.code import ROOT
from tests.fixtures.manifests import (
    RELEASE_NS,
    VALUE_SETS,
    env_of,
    find,
    helm,
    operator_deployment,
    render,
    write_values,
)

PAGE = "botfleet-page"


def page_docs(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "page"]


def with_page(values: dict, **page) -> dict:
    return {**values, "page": {"enabled": True, **page}}


def test_off_by_default(tmp_path):
    assert not page_docs(render(tmp_path, {}))


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_page_deployment_service_and_read_only_rbac(value_set, tmp_path):
    values = with_page(VALUE_SETS[value_set])
    docs = render(tmp_path, values)
    (deployment,) = find(docs, "Deployment", PAGE)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    operator = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == operator["image"]  # the same image, another command
    assert container["command"] == ["python", "-m", "botfleet_web"] and "--cluster" in container["args"]
    namespaces = values.get("watchNamespaces") or []
    assert [a for a in container["args"] if a.startswith("--namespace=")] == [f"--namespace={n}" for n in namespaces]
    assert (
        pod["serviceAccountName"] == PAGE != operator_deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"]
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = env_of(container)
    assert set(env) >= {"BOTFLEET_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "BOTFLEET_PAGE_TOKEN" not in env
    (service,) = find(docs, "Service", PAGE)
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http" and not find(docs, "Ingress")
    # RBAC: list BotRequests and Events, nothing else, bound to the page's account only
    roles = [d for d in page_docs(docs) if d["kind"] in ("Role", "ClusterRole")]
    bindings = [d for d in page_docs(docs) if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert roles and len(roles) == len(bindings) == max(1, len(namespaces))
    for role in roles:
        granted = {
            (g, r, v)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }
        assert granted == {("botfleet.dev", "botrequests", "list"), ("", "events", "list")}
        assert role["kind"] == ("Role" if namespaces else "ClusterRole")
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": PAGE, "namespace": RELEASE_NS}]


def test_token_ingress_and_try_it(tmp_path):
    values = with_page(
        {},
        tokenSecret="page-token",
        completionsUrl="/v1/completions",
        ingress={"enabled": True, "className": "nginx", "host": "bots.example.com", "tlsSecret": "bots-tls"},
    )
    docs = render(tmp_path, values)
    (container,) = find(docs, "Deployment", PAGE)[0]["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["BOTFLEET_PAGE_TOKEN"] == {"secretKeyRef": {"name": "page-token", "key": "token"}}
    assert "--completions-url=/v1/completions" in container["args"]
    (ingress,) = find(docs, "Ingress", PAGE)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["bots.example.com"], "secretName": "bots-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "bots.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": PAGE, "port": {"name": "http"}}


def test_lint_and_schema(tmp_path):
    values = write_values(tmp_path, with_page({}, ingress={"enabled": True}))
    assert "0 chart(s) failed" in helm("lint", "--strict", str(ROOT / "charts" / "botfleet"), "-f", str(values)).stdout
    bad = write_values(tmp_path, with_page({}, servce={}), "bad.yaml")
    proc = helm("template", "botfleet", str(ROOT / "charts" / "botfleet"), "-f", str(bad), check=False)
    assert proc.returncode != 0 and "servce" in proc.stderr


def test_page_uses_no_more_than_rbac_grants():
    """The page's Kubernetes calls, read from its code: listing BotRequests and Events."""
    code = "\n".join(p.read_text() for p in sorted((ROOT / "web" / "botfleet_web").rglob("*.py")))
    assert "KubeReader" in code  # the reader is where this looks
    calls = set(re.findall(r"\.((?:get|list|create|delete|patch|replace|read|watch)_[a-z_]+)\(", code))
    kube_calls = {c for c in calls if "_namespaced_" in c or "_cluster_" in c}
    assert kube_calls == {"list_cluster_custom_object", "list_namespaced_custom_object", "list_namespaced_event"}

"""The operator's own Kubernetes calls (kopf's watches aside; RayJobs are the kuberay executor's).

All calls block (the runtime runs them in threads). The chart's RBAC grants exactly these
calls and the executors' (tests/unit/test_chart.py reads them from this package's code).
"""

from __future__ import annotations

import base64
import datetime
import logging
import os

import kubernetes
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from botfleet import api

log = logging.getLogger("botfleet_operator")


class Kube:
    """BotRequest status patches and look-ups, Secrets (ray executor) and Events."""

    def __init__(self, pool_size: int) -> None:
        """Connect with the in-cluster service account, else ``$KUBECONFIG`` (~/.kube/config);
        ``pool_size``: at most that many calls at once (one per reconcile thread)."""
        configuration = k8s.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            # $KUBECONFIG as it is now: the client library reads it once, when first imported.
            config_file = os.environ.get("KUBECONFIG")
            kubernetes.config.load_kube_config(config_file=config_file, client_configuration=configuration)
        configuration.connection_pool_maxsize = max(4, pool_size)
        client = k8s.ApiClient(configuration)
        self.custom = k8s.CustomObjectsApi(client)
        self.core = k8s.CoreV1Api(client)

    def patch_status(self, namespace: str, name: str, patch: dict) -> None:
        """Merge ``patch`` into a BotRequest's status (the only write to a BotRequest)."""
        self.custom.patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            {"status": patch},
            _content_type="application/merge-patch+json",
        )

    def request_uid(self, namespace: str, name: str) -> str | None:
        """The uid of BotRequest ``namespace/name``, None if there is none."""
        try:
            request = self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return request["metadata"]["uid"]

    def list_requests(self, namespaces: tuple[str, ...]) -> list[dict]:
        """Every BotRequest in ``namespaces`` (all namespaces when empty)."""
        if not namespaces:
            return self.custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)["items"]
        requests = []
        for namespace in namespaces:
            listed = self.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
            requests += listed["items"]
        return requests

    def read_secret(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None if the Secret or the key is missing."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode() if raw is not None else None

    def post_events(self, body: dict, events: list[tuple[str, str, str]]) -> None:
        """Post ``(type, reason, message)`` Events on the BotRequest ``body`` (best effort)."""
        meta = body["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        for kind, reason, message in events:
            event = k8s.CoreV1Event(
                metadata=k8s.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
                involved_object=k8s.V1ObjectReference(
                    api_version=api.API_VERSION,
                    kind=api.KIND,
                    name=meta["name"],
                    namespace=meta["namespace"],
                    uid=meta.get("uid"),
                    resource_version=meta.get("resourceVersion"),
                ),
                reason=reason,
                message=message[:1024],
                type=kind,
                count=1,
                first_timestamp=now,
                last_timestamp=now,
                source=k8s.V1EventSource(component="botfleet-operator"),
                reporting_component="botfleet.dev/operator",
                reporting_instance=os.environ.get("HOSTNAME", "botfleet-operator"),
            )
            try:
                self.core.create_namespaced_event(meta["namespace"], event)
            except Exception as exc:  # noqa: BLE001 - events are best effort
                log.warning("cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

"""The page's Kubernetes calls, all reads: BotRequests (``list``) and their Events (``list``).
The chart's Role for the page grants exactly these two (tests/unit/test_chart.py)."""

from __future__ import annotations

import os

from botfleet import api

# What the page shows of an Event; nothing else of it (annotations, the object) is kept.
EVENT_FIELDS = ("type", "reason", "message", "time")


class KubeReader:
    """Connects with the in-cluster service account, else ``$KUBECONFIG``."""

    def __init__(self, namespaces: tuple[str, ...] = ()) -> None:
        import kubernetes
        from kubernetes import client as k8s

        configuration = k8s.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            # $KUBECONFIG as it is now: the client library reads it once, when first imported.
            config_file = os.environ.get("KUBECONFIG")
            kubernetes.config.load_kube_config(config_file=config_file, client_configuration=configuration)
        client = k8s.ApiClient(configuration)
        self.custom = k8s.CustomObjectsApi(client)
        self.core = k8s.CoreV1Api(client)
        self.namespaces = namespaces

    def list_requests(self) -> list[dict]:
        """Every BotRequest in the page's namespaces (all namespaces when none are given)."""
        if not self.namespaces:
            return self.custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)["items"]
        found: list[dict] = []
        for namespace in self.namespaces:
            found += self.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)["items"]
        return found

    def list_events(self, namespace: str, name: str) -> list[dict]:
        """The Events on BotRequest ``namespace/name``, oldest first."""
        selector = f"involvedObject.kind={api.KIND},involvedObject.name={name}"
        events = self.core.list_namespaced_event(namespace, field_selector=selector).items
        return sorted((event_fields(e) for e in events), key=lambda e: e["time"])


def event_fields(event) -> dict:
    when = event.last_timestamp or event.event_time or event.first_timestamp
    time = when.isoformat() if when else ""
    return {"type": event.type, "reason": event.reason, "message": event.message, "time": time}

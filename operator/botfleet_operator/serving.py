"""Serving on a cluster: which bots the fleet's one Serve application serves, what their
status says about it, and (``ray`` executor) that application on the Ray cluster.

The operator's part is thin and level-based. Every ``serving_sync_interval`` it lists the
BotRequests and

* writes the serving catalog (``serving_catalog``, ``{"bots": {model name: bot folder}}``),
  a pure function of the served requests, only when its content changed; the application
  re-reads it, so a bot appears once it has succeeded and disappears once its request is
  deleted (or says ``spec.serving.enabled: false``);
* writes ``status.serving`` and the ``Serving`` condition of every finished request, only
  when they changed (the reconciler writes the other conditions, and none of a finished
  request, so the two never write the same request at once);
* with the ``ray`` executor, deploys the application through Serve's REST API, beside the
  cluster's other applications, when the deployed config differs. With ``kuberay`` the Helm
  chart runs the application as a RayService (charts/botfleet/templates/rayservice.yaml).

A bot's model name is ``<namespace>/<BotRequest name>``: Kubernetes makes it unique across
the namespaces, which the model id (the handles) is not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable

from botfleet import api
from botfleet.layout import folder
from botfleet.reasons import Reason
from botfleet.storage import NotFound, Storage
from botfleet.timestamps import now_iso
from botfleet_operator.patch import merge_patch
from botfleet_operator.serve_api import serve_request
from botfleet_operator.settings import Settings
from botfleet_operator.status import SUCCEEDED, condition, is_terminal_for, merge_conditions

log = logging.getLogger("botfleet_operator")

CONDITION = "Serving"
APP_NAME = "botfleet"


def model_name(namespace: str, name: str) -> str:
    """The name clients ask the serving API for (``model`` of ``/v1/completions``)."""
    return f"{namespace}/{name}"


def _disabled(body: dict) -> bool:
    return ((body.get("spec") or {}).get("serving") or {}).get("enabled") is False


def served_folder(body: dict) -> str | None:
    """The bot folder (``<output>/<model-id>/``: result.json, model/) the catalog lists for
    a request; None when it is not served: its current generation has not succeeded, or its
    spec turns serving off. The application reads the bot's state from the folder's files."""
    status = body.get("status") or {}
    if not is_terminal_for(body) or status.get("phase") != SUCCEEDED or _disabled(body):
        return None
    try:
        spec = api.parse_spec(body.get("spec"))
    except api.ValidationError:
        return None
    return folder(spec.model_uri)


def catalog(bodies: Iterable[dict]) -> dict:
    """The serving catalog: every served request's model name and model folder, sorted."""
    bots = {}
    for body in bodies:
        uri = served_folder(body)
        if uri is not None:
            meta = body["metadata"]
            bots[model_name(meta.get("namespace", "default"), meta["name"])] = uri
    return {"bots": dict(sorted(bots.items()))}


def catalog_bytes(content: dict) -> bytes:
    return (json.dumps(content, indent=2, sort_keys=True) + "\n").encode()


def serving_condition(body: dict, endpoint: str) -> tuple[dict | None, dict]:
    """``status.serving`` (None when not served) and the Serving condition of a finished request."""
    meta = body["metadata"]
    generation = int(meta.get("generation") or 1)
    if _disabled(body):
        return None, condition(CONDITION, False, Reason.SERVING_DISABLED, "spec.serving.enabled is false", generation)
    if served_folder(body) is None:
        message = "the bot is served once its current spec has succeeded"
        return None, condition(CONDITION, False, Reason.NOT_TRAINED, message, generation)
    name = model_name(meta.get("namespace", "default"), meta["name"])
    where = f" at {endpoint}" if endpoint else ""
    served = {"model": name, **({"endpoint": endpoint} if endpoint else {})}
    return served, condition(CONDITION, True, Reason.SERVED, f"served as {name}{where}", generation)


def status_patch(body: dict, endpoint: str, now: str | None = None) -> dict | None:
    """The status merge patch that brings a request's serving part up to date (None: none).

    A finished request gets ``status.serving`` and the Serving condition; an unfinished one
    (a new spec training) loses ``status.serving``, and the reconciler's conditions stand.
    """
    status = body.get("status") or {}
    old_conditions = status.get("conditions") or []
    if not is_terminal_for(body):
        return {"serving": None} if "serving" in status else None
    served, cond = serving_condition(body, endpoint)
    others = [c for c in old_conditions if c.get("type") != CONDITION]
    merged = merge_conditions(old_conditions, [cond], now or now_iso())
    old = {"serving": status.get("serving"), "conditions": old_conditions}
    patch = merge_patch(old, {"serving": served, "conditions": others + merged})
    return patch


def serve_application(settings: Settings, env_vars: dict[str, str] | None = None) -> dict:
    """The fleet's Serve application, as Serve's declarative config has it (one entry of
    ``applications``). The chart's RayService carries the same (tests/unit/test_chart.py).
    ``env_vars``: the object store's, for a Ray cluster whose pods do not have them."""
    app = {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": settings.serving_import_path,
        "args": {
            "catalog": settings.serving_catalog,
            "models_per_replica": settings.serving_models_per_replica,
            "min_replicas": settings.serving_min_replicas,
            "max_replicas": settings.serving_max_replicas,
            "replica_cpus": settings.serving_replica_cpus,
            "replica_gpus": settings.serving_replica_gpus,
        },
    }
    if env_vars:
        app["runtime_env"] = {"env_vars": dict(env_vars)}
    return app


def deploy_config(details: dict, app: dict, port: int) -> dict | None:
    """The declarative config to PUT so that ``app`` runs beside the cluster's other
    applications (a PUT replaces them all); None when ``app`` is deployed as it is.

    ``details``: the GET answer. Serve keeps its HTTP options once it runs; they are passed
    back as they are, and only a Serve not yet running gets ``port``.
    """
    applications = details.get("applications") or {}
    deployed = (applications.get(app["name"]) or {}).get("deployed_app_config")
    if deployed is not None and all(deployed.get(key) == value for key, value in app.items()):
        return None
    others = [
        a["deployed_app_config"]
        for name, a in sorted(applications.items())
        if name != app["name"] and a.get("deployed_app_config")
    ]
    running = bool(details.get("controller_info"))
    config = {
        "http_options": details["http_options"] if running and details.get("http_options") else {"port": port},
        "applications": [*others, app],
    }
    if running and details.get("proxy_location"):
        config["proxy_location"] = details["proxy_location"]
    return config


class ServingSync:
    """The I/O of the above: list, write what changed, deploy. Blocking; one at a time."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        list_requests: Callable[[tuple[str, ...]], list[dict]],
        patch_status: Callable[[str, str, dict], None],
        deploy_env: dict[str, str] | None,
        ray_headers: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.list_requests = list_requests
        self.patch_status = patch_status
        self.deploy_env = deploy_env  # None: the application is not the operator's to deploy (kuberay)
        self.ray_headers = ray_headers  # the Ray cluster's authentication, asked for on each call
        self._written: bytes | None = None  # the catalog as last written or found

    def sync(self) -> None:
        """One pass; a part that fails is logged and tried again at the next pass."""
        bodies = self.list_requests(self.settings.namespaces)
        for part, run in (
            ("write the serving catalog", lambda: self.write_catalog(catalog(bodies))),
            ("update serving status", lambda: self.write_statuses(bodies)),
            ("deploy the serving application", self.deploy if self.deploy_env is not None else None),
        ):
            if run is None:
                continue
            try:
                run()
            except Exception as exc:  # noqa: BLE001 - the store, the API server or Ray away: next pass
                log.warning("cannot %s: %s", part, exc)

    def write_catalog(self, content: dict) -> bool:
        """Write the catalog if its content changed; True if it was written."""
        data = catalog_bytes(content)
        if self._written is None:
            try:
                self._written = self.storage.read_bytes(self.settings.serving_catalog)
            except NotFound:
                pass
        if data == self._written:
            return False
        self.storage.write_bytes(self.settings.serving_catalog, data, content_type="application/json")
        self._written = data
        log.info("serving catalog %s: %d bots", self.settings.serving_catalog, len(content["bots"]))
        return True

    def write_statuses(self, bodies: list[dict]) -> int:
        """Patch each request whose serving status is out of date; how many were patched."""
        patched = 0
        for body in bodies:
            patch = status_patch(body, self.settings.serving_endpoint)
            if not patch:
                continue
            meta = body["metadata"]
            try:
                self.patch_status(meta["namespace"], meta["name"], patch)
                patched += 1
            except Exception as exc:  # noqa: BLE001 - e.g. deleted since the listing: next pass
                log.warning("cannot update the serving status of %s/%s: %s", meta["namespace"], meta["name"], exc)
        return patched

    def deploy(self) -> bool:
        """Deploy the application on the Ray cluster unless it runs as configured; True if deployed."""
        address = self.settings.ray_address
        details = serve_request(address, "GET", headers=self.ray_headers()) or {}
        app = serve_application(self.settings, self.deploy_env)
        config = deploy_config(details, app, self.settings.serving_port)
        if config is None:
            return False
        serve_request(address, "PUT", config, headers=self.ray_headers())
        log.info("deployed the serving application %r to the Ray cluster at %s", APP_NAME, address)
        return True

    async def run(self, pool) -> None:
        """Sync every ``serving_sync_interval`` seconds, in ``pool``, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(pool, self.sync)
            except Exception:  # noqa: BLE001 - e.g. the API server away: next pass
                log.exception("serving sync failed")
            await asyncio.sleep(self.settings.serving_sync_interval)

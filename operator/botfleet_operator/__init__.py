"""The BotRequest operator (kopf): BotRequests in, RayJobs (or Ray jobs) out, status back.

Entrypoints: :func:`main` (``botfleet operator`` arguments) and :func:`run` (a
:class:`Settings`). Layout: ``settings`` (configuration), ``rayjob`` (pure rendering of
names, environment and the RayJob), ``status`` (pure status mapping, conditions and
queueing), ``executors`` (kuberay and ray), ``reconciler`` (one reconcile, blocking I/O),
``kube`` (the operator's Kubernetes calls), ``runtime`` (the one object the handlers share:
when reconciles run), ``handlers`` (kopf), ``metrics`` (Prometheus), ``failures`` (what a
failing reconcile records, announces and when it is retried: pure), ``ray_access`` (calls to a
Ray cluster with its token), ``health`` (whether the executor's cluster answers: /readyz).
"""

from __future__ import annotations

import logging
import sys

from botfleet_operator.settings import Settings, add_arguments, parser

__all__ = ["Settings", "run", "main", "add_arguments", "parser"]


def run(settings: Settings) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM). Blocks.

    Uses the in-cluster service account when there is one, else ``$KUBECONFIG``
    (or ~/.kube/config).
    """
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kubernetes.client.rest").setLevel(logging.WARNING)
    import kopf  # after logging and $KUBECONFIG are set (kopf reads it at import)

    from botfleet_operator import handlers, health, metrics
    from botfleet_operator.runtime import Runtime

    runtime = Runtime.create(settings)
    address = settings.bind_address
    _listen(
        address,
        settings.metrics_port,
        "--metrics-port",
        lambda: metrics.serve(settings.metrics_port, address, runtime.current_phases),
    )
    _listen(
        address,
        settings.ready_port,
        "--ready-port",
        lambda: health.serve_readiness(settings.ready_port, address, runtime.health),
    )
    liveness = f"http://{settings.bind_address}:{settings.health_port}/healthz" if settings.health_port else None
    logging.getLogger("botfleet_operator").info(
        "botfleet operator: executor %s, at most %s trainings, namespaces %s, metrics :%s, health :%s",
        settings.executor,
        settings.max_concurrent or "unlimited",
        ",".join(settings.namespaces) or "all",
        settings.metrics_port,
        settings.health_port,
    )
    kopf.run(
        registry=handlers.registry,
        memo=kopf.Memo(runtime=runtime),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=liveness,
    )


def _listen(address: str, port: int, flag: str, start) -> None:
    """Start one of the operator's HTTP endpoints; a port in use ends the operator with one line."""
    try:
        start()
    except OSError as exc:
        raise SystemExit(
            f"botfleet operator: error: cannot listen on {address}:{port}: {exc.strerror or exc}"
            f" (choose another with {flag}, or 0 for none)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """``botfleet operator [flags]``: parse flags (and BOTFLEET_OPERATOR_* variables) and run."""
    try:
        settings = Settings.from_argv(argv)
    except ValueError as exc:
        print(f"botfleet operator: error: {exc}", file=sys.stderr)
        return 2
    run(settings)
    return 0

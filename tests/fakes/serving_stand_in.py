"""A stand-in for the serving application (``botfleet_serving.app:build_app``), for the tests
of how the operator deploys it (tests/integration/test_serving_cluster.py), which are about
the deployment, not about generation: it takes the same ``args``, re-reads the catalog on
every request and lists its bots at ``GET /v1/models``, with the variable the deploy's
``runtime_env`` set, to show that it reached the replica.
"""

from __future__ import annotations

import os

from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ServingStandIn:
    def __init__(self, args: dict) -> None:
        self.args = args

    def __call__(self, request) -> dict:
        from botfleet.storage import Storage

        bots = Storage().read_json(self.args["catalog"])["bots"]
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "root": uri} for name, uri in sorted(bots.items())],
            "args": self.args,
            "mark": os.environ.get("SERVING_STAND_IN_MARK"),
            "path": request.url.path,
        }


def build_app(args: dict):
    return ServingStandIn.bind(dict(args))

"""A stand-in for another team's Ray Serve application on a shared Ray cluster, for the test
that the operator's deploy (a PUT of the whole declarative config) leaves it running
(tests/integration/test_serving_cluster.py). It answers every request with its ``args``."""

from __future__ import annotations

from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ServingStandIn:
    def __init__(self, args: dict) -> None:
        self.args = args

    def __call__(self, request) -> dict:
        return {"app": "stand-in", "args": self.args, "path": request.url.path}


def build_app(args: dict):
    return ServingStandIn.bind(dict(args))

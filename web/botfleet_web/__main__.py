"""The fleet page alone, as the chart's Deployment runs it (the operator image):

    python -m botfleet_web --output s3://bots          # the folders under one output URI
    python -m botfleet_web --cluster [--namespace NS]  # the BotRequests and their folders

The object store comes from the environment (``BOTFLEET_S3_ENDPOINT``, ``AWS_*``); the
bearer token, when set, from ``BOTFLEET_PAGE_TOKEN`` (a Secret in the chart).
"""

from __future__ import annotations

import argparse
import os
import sys

from botfleet.errors import UserError, one_line
from botfleet.storage import Storage


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m botfleet_web", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", action="append", help="an output URI: show the bot folders under it (repeatable)")
    where.add_argument("--cluster", action="store_true", help="show the BotRequests of the cluster")
    parser.add_argument("--namespace", action="append", default=[], help="with --cluster: only this namespace")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--completions-url", default=None, help="where the 'try it' box posts (same origin)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from botfleet_web.app import fleet_app
    from botfleet_web.cluster import KubeReader
    from botfleet_web.source import ClusterSource, StoreSource

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        storage = Storage.from_env()
        if args.cluster:
            reader = KubeReader(tuple(args.namespace))
            source = ClusterSource(storage, reader.list_requests, reader.list_events)
        else:
            source = StoreSource(storage, args.output)
    except UserError as error:
        print(f"botfleet-web: error: {one_line(error)}", file=sys.stderr)
        return 2
    token = os.environ.get("BOTFLEET_PAGE_TOKEN") or None
    app = fleet_app(source, completions_url=args.completions_url, token=token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `botfleet` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from botfleet import __version__, api
from botfleet.dataset import NotEnoughText
from botfleet.posts import SourceError
from botfleet.storage import S3Config, Storage, StorageError, parse_uri

# Failures a user can fix get one line on stderr and exit code 1 (2 for a bad request).
USER_ERRORS = (SourceError, NotEnoughText, StorageError)


def fail(message: str, code: int = 1) -> int:
    print(f"botfleet: error: {message}", file=sys.stderr)
    return code


def request_buckets(spec: api.BotSpec) -> set[str]:
    uris = [spec.output.uri] + [getattr(h.source.config, "uri", "") for h in spec.handles]
    return {parse_uri(uri).bucket for uri in uris if uri.startswith("s3://")}


@contextlib.contextmanager
def open_storage(spec: api.BotSpec):
    """The configured object store, or botfleet's embedded one when none is configured.

    The embedded store is botfleet's own, so the buckets a request names are created in
    it; a configured store is used as it is (a missing bucket there is an error).
    """
    config = S3Config.from_env()
    if config is not None or not request_buckets(spec):
        yield Storage(config)
        return
    from botfleet.embedded_s3 import local_default_storage

    storage, server = local_default_storage(os.environ.get("BOTFLEET_HOME"))
    for bucket in request_buckets(spec):
        storage.ensure_bucket(bucket)
    print(f"botfleet: no object store configured; using the embedded one at {storage.config.endpoint}", file=sys.stderr)
    yield storage


def cmd_version(args) -> int:
    print(f"botfleet {__version__}")
    return 0


def cmd_crd(args) -> int:
    sys.stdout.write(api.crd_yaml())
    return 0


def cmd_api_docs(args) -> int:
    sys.stdout.write(api.spec_reference_markdown())
    return 0


def cmd_validate(args) -> int:
    for path in args.requests:
        request = api.load_request(path)
        print(f"{path}: ok ({request.name}, model id {request.spec.model_id})")
    return 0


def cmd_prepare(args) -> int:
    from botfleet.data_stage import DatasetLocation, format_table, prepare

    request = api.load_request(args.request)
    with open_storage(request.spec) as storage:
        stats = prepare(request.spec, storage, reuse=not args.fresh)
        location = DatasetLocation.for_spec(request.spec)
        print(format_table(stats), end="")
        for warning in stats["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"dataset: {location.prefix}/")
        if args.local_dir:
            local = Path(args.local_dir)
            local.mkdir(parents=True, exist_ok=True)
            for uri in (location.train, location.valid, location.stats):
                storage.download_file(uri, str(local / uri.rsplit("/", 1)[1]))
            print(f"local copy: {local}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botfleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    commands.add_parser("crd", help="print the BotRequest CustomResourceDefinition").set_defaults(func=cmd_crd)

    commands.add_parser("api-docs", help="print the BotRequest spec reference (docs/api.md)").set_defaults(func=cmd_api_docs)

    validate = commands.add_parser("validate", help="check BotRequest files against the schema")
    validate.add_argument("requests", nargs="+", metavar="REQUEST.yaml")
    validate.set_defaults(func=cmd_validate)

    prepare = commands.add_parser("prepare", help="gather, filter and store a request's dataset")
    prepare.add_argument("request", metavar="REQUEST.yaml")
    prepare.add_argument("--local-dir", metavar="DIR", help="also write train.txt, valid.txt and stats.json here")
    prepare.add_argument("--fresh", action="store_true", help="fetch again even if a complete dataset exists")
    prepare.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except api.ValidationError as error:
        return fail(str(error), code=2)
    except USER_ERRORS as error:
        return fail(str(error))
    except KeyboardInterrupt:
        return fail("interrupted", code=130)


if __name__ == "__main__":
    sys.exit(main())

"""The `botfleet` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from botfleet import __version__, api
from botfleet.errors import MissingExtra, UserError, one_line
from botfleet.storage import S3Config, Storage, parse_uri


def fail(message: str, code: int = 1) -> int:
    print(f"botfleet: error: {message}", file=sys.stderr)
    return code


def uses_s3(spec: api.BotSpec) -> bool:
    uris = [spec.output.uri] + [getattr(h.source.config, "uri", "") for h in spec.handles]
    return any(uri.startswith("s3://") for uri in uris)


@contextlib.contextmanager
def open_storage(spec: api.BotSpec):
    """The configured object store, or botfleet's embedded one when none is configured.

    The embedded store is botfleet's own, so the output bucket is created in it; a source's
    bucket is not (a mistyped one must be reported, not made). A configured store is used
    as it is (a missing bucket there is an error).
    """
    with storage_for(uses_s3(spec), own_uri=spec.output.uri) as storage:
        yield storage


@contextlib.contextmanager
def storage_for(needs_s3: bool, own_uri: str | None = None):
    """The configured object store, or the embedded one when ``needs_s3`` and none is
    configured; there, the bucket of ``own_uri`` (botfleet's own output) is created."""
    config = S3Config.from_env()
    if config is not None or not needs_s3:
        yield Storage(config)
        return
    from botfleet.embedded_s3 import local_default_storage

    storage, _ = local_default_storage()
    if own_uri and own_uri.startswith("s3://"):
        storage.ensure_bucket(parse_uri(own_uri).bucket)
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
    from botfleet.layout import Layout, folder
    from botfleet_jobs.data_stage import format_table, prepare

    request = api.load_request(args.request)
    with open_storage(request.spec) as storage:
        stats = prepare(request.spec, storage, reuse=not args.fresh)
        layout = Layout(request.spec.model_uri)
        print(format_table(stats), end="")
        for warning in stats["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"dataset: {folder(layout.data)}")
        if args.local_dir:
            local = Path(args.local_dir)
            local.mkdir(parents=True, exist_ok=True)
            for uri in (layout.train_txt, layout.valid_txt, layout.stats):
                storage.download_file(uri, str(local / uri.rsplit("/", 1)[1]))
            print(f"local copy: {local}/")
    return 0


def _job_module():
    """The training job needs the ML stack (the `jobs` extra), which the operator image lacks."""
    try:
        from botfleet_jobs import job
    except ImportError as error:
        raise MissingExtra(
            f"`botfleet run` needs the training stack: pip install 'botfleet[jobs]' ({error})"
        ) from error
    return job


def run_request(request: api.BotRequest, storage: Storage, out_dir: str | None) -> int:
    job = _job_module()
    spec = request.spec
    result = job.run_job(request, storage, show_progress=True)
    local = Path(out_dir or "botfleet-output") / spec.model_id
    storage.download_dir(result["model"], local)
    metrics = result["metrics"]
    print(f"\nmodel: {result['model']}\ncard:  {result['card']}\nlocal copy: {local}/ (README.md is the card)")
    if metrics.get("perplexity_after") is not None:
        print(
            f"validation perplexity: {metrics['perplexity_before']:.1f} before,"
            f" {metrics['perplexity_after']:.1f} after fine-tuning"
        )
    if result.get("tracking_files") and not result.get("tracking_run_url"):
        print(
            f"W&B offline runs: {result['tracking_files']} (copy the folder, then `wandb sync` its wandb/offline-run-*)"
        )
    print(
        '\ntry it:  python -c "from transformers import pipeline;'
        f" print(pipeline('text-generation', model='{local}')('My dream is'))\"\n"
    )
    for sample in json.loads((local / "samples.json").read_text())["samples"]:
        print(f"  {sample['prompt']!r} -> {sample['prediction']!r}")
    return 0


def cmd_run(args) -> int:
    request = api.load_request(args.request)
    with open_storage(request.spec) as storage:
        return run_request(request, storage, args.out)


def cmd_demo(args) -> int:
    from botfleet import demo

    job = _job_module()
    request = api.parse_request(demo.REQUEST)
    print(
        "botfleet demo: no pretrained weights can be downloaded here, so the base model is a small GPT-2"
        " with RANDOM weights and the real GPT-2 tokenizer; expect a bot that has learnt the jokes' words,"
        " not fluent English.",
        file=sys.stderr,
    )
    with open_storage(request.spec) as storage:
        if not storage.exists(demo.DATASET_URI):
            storage.write_bytes(demo.DATASET_URI, demo.corpus_jsonl(), content_type="application/x-ndjson")
        if not storage.exists(demo.BASE_MODEL_URI + "/config.json"):
            job.publish_random_base_model(storage, demo.BASE_MODEL_PRESET, demo.BASE_MODEL_URI)
        return run_request(request, storage, args.out)


def cmd_store(args) -> int:
    """The embedded object store `run` and `demo` leave running, so that the s3:// locations
    they print stay readable (and uploads for the next request have somewhere to go)."""
    import shlex

    from botfleet.embedded_s3 import EmbeddedS3, default_data_dir, local_default_storage

    data_dir = default_data_dir()
    if args.action == "start":
        if S3Config.from_env() is not None:
            return fail(
                "an object store is configured (BOTFLEET_S3_ENDPOINT or AWS_ENDPOINT_URL): the embedded one is not used"
            )
        _, server = local_default_storage()  # started, or the one already running
    else:
        server = EmbeddedS3.find_running(data_dir)
    if args.action == "stop":
        if server is not None:
            server.stop()
        print(f"embedded object store: {'stopped' if server else 'not running'}; its data stays in {data_dir}")
        return 0
    if server is None:
        print(f"embedded object store: not running (data in {data_dir}; `botfleet store start` starts it)")
        return 1
    if args.action == "env":  # for `eval "$(botfleet store env)"` in another shell
        for name, value in server.config.to_env().items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    print(f"embedded object store: running (pid {server.pid}) at {server.endpoint}, data in {data_dir}")
    print('`eval "$(botfleet store env)"` points botfleet, the AWS CLI or any S3 client at it')
    return 0


def _serving_commands():
    """Generation and serving need the ML stack and Ray Serve (the `jobs` extra)."""
    try:
        from botfleet_serving import commands
    except ImportError as error:
        raise MissingExtra(f"generation and serving need: pip install 'botfleet[jobs]' ({error})") from error
    return commands


def cmd_generate(args) -> int:
    from botfleet.model_target import resolve_target, target_place

    commands = _serving_commands()
    with storage_for(target_place(args.target).uri.startswith("s3://")) as storage:
        return commands.generate(storage, resolve_target(args.target, storage), args)


def cmd_serve(args) -> int:
    commands = _serving_commands()
    with storage_for(args.output.startswith("s3://"), own_uri=args.output) as storage:
        return commands.serve_locally(storage, args.output, args.host, args.port)


def cmd_operator(operator_args: list[str]) -> int:
    try:
        from botfleet_operator import main as operator_main
    except ImportError as error:
        raise MissingExtra(
            f"`botfleet operator` needs the operator extra: pip install 'botfleet[operator]' ({error})"
        ) from error
    return operator_main(operator_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botfleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    commands.add_parser("crd", help="print the BotRequest CustomResourceDefinition").set_defaults(func=cmd_crd)

    commands.add_parser("api-docs", help="print the BotRequest spec reference (docs/api.md)").set_defaults(
        func=cmd_api_docs
    )

    validate = commands.add_parser("validate", help="check BotRequest files against the schema")
    validate.add_argument("requests", nargs="+", metavar="REQUEST.yaml")
    validate.set_defaults(func=cmd_validate)

    prepare = commands.add_parser("prepare", help="gather, filter and store a request's dataset")
    prepare.add_argument("request", metavar="REQUEST.yaml")
    prepare.add_argument("--local-dir", metavar="DIR", help="also write train.txt, valid.txt and stats.json here")
    prepare.add_argument("--fresh", action="store_true", help="fetch again even if a complete dataset exists")
    prepare.set_defaults(func=cmd_prepare)

    run = commands.add_parser("run", help="make the bot on this machine: data, training, model card")
    run.add_argument("request", metavar="REQUEST.yaml")
    run.add_argument("--out", metavar="DIR", help="where to copy the finished model (default ./botfleet-output)")
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="make the example bot end to end (embedded object store, local Ray)")
    demo.add_argument("--out", metavar="DIR", help="where to copy the finished model (default ./botfleet-output)")
    demo.set_defaults(func=cmd_demo)

    store = commands.add_parser("store", help="the embedded object store used when none is configured")
    store.add_argument(
        "action",
        choices=["status", "start", "stop", "env"],
        help=(
            "status: is it running, where; start: start it (or find it running);"
            " stop: stop it, keeping its data; env: its endpoint and keys as shell exports"
        ),
    )
    store.set_defaults(func=cmd_store)

    generate = commands.add_parser("generate", help="continue a prompt with a bot")
    generate.add_argument(
        "target", metavar="TARGET", help="a BotRequest YAML, an s3:// or file:// bot or model folder, or a local folder"
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument("-n", type=int, default=1, help="how many generations (default 1)")
    generate.add_argument("--max-new-tokens", type=int, metavar="K", help="default: the model's saved settings")
    generate.add_argument("--temperature", type=float, metavar="T", help="default: the model's saved settings")
    generate.add_argument("--top-p", type=float, metavar="P", help="default: the model's saved settings")
    generate.add_argument("--seed", type=int, metavar="S", help="for generations that can be made again")
    generate.add_argument("--json", action="store_true", help='print {"model", "prompt", "generations"}')
    generate.set_defaults(func=cmd_generate)

    serve = commands.add_parser("serve", help="serve the finished bots on an OpenAI-compatible API (local Ray Serve)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--output", default="s3://bots/", metavar="URI", help="where the bots are (default s3://bots/)")
    serve.set_defaults(func=cmd_serve)

    # Listed for --help only: main() hands `operator ...` to the operator's own parser.
    commands.add_parser(
        "operator", add_help=False, help="run the BotRequest operator (`botfleet operator --help` for its flags)"
    )
    return parser


# A local Ray started by `run`/`demo`: no token-auth warning, no usage stats, and reports
# that don't wait on the 1.4 s default health check (see docs in the trainer).
LOCAL_RAY_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["operator"]:  # its flags are the operator's own (botfleet_operator.settings)
        return cmd_operator(argv[1:])
    args = build_parser().parse_args(argv)
    for name, value in LOCAL_RAY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        return args.func(args)
    except UserError as error:  # the request or its inputs: one line, exit code 2
        return fail(str(error), code=2)
    except KeyboardInterrupt:
        return fail("interrupted", code=130)
    except Exception as error:  # a failed job (base model, out of memory, a crashed worker...)
        if os.environ.get("BOTFLEET_DEBUG"):
            raise
        return fail(f"{one_line(error)} (BOTFLEET_DEBUG=1 shows the traceback)")


if __name__ == "__main__":
    sys.exit(main())

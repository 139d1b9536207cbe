"""Run the training job from a shell (a RayJob entrypoint, or a subprocess in tests).

    python -m botfleet_jobs.trainer_cli --request bot.yaml
    python -m botfleet_jobs.trainer_cli --spec-json '{"handles": [...], "output": {...}}'

The object store comes from the environment (``BOTFLEET_S3_ENDPOINT`` or
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). Ray: joins
``--ray-address`` / ``RAY_ADDRESS`` when given, else starts a local Ray (``--num-cpus``,
``--ray-temp-dir``) and stops it at the end.

Exit status: 0 trained (the result is printed as one JSON line on stdout), 1 the training
failed (one ``error: ...`` line on stderr), 2 the request is invalid.
Running it again after an interruption resumes from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from botfleet.api import ValidationError, load_request, parse_spec
from botfleet.storage import S3Config, StorageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m botfleet_jobs.trainer_cli", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--request", metavar="FILE", help="a BotRequest YAML file")
    source.add_argument("--spec-json", metavar="JSON", help="a BotRequest spec as JSON (camelCase, as in the CRD)")
    source.add_argument("--spec-file", metavar="FILE", help="a file holding the spec as JSON")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    parser.add_argument(
        "--cpus-per-worker", type=int, help="default: spec.resources.cpusPerWorker (capped on a local Ray)"
    )
    parser.add_argument("--ray-temp-dir", help="temp/session folder of the local Ray (keep it short: socket paths)")
    parser.add_argument(
        "--checkpoint-every-steps", type=int, default=50, help="also checkpoint every N steps (0: only per epoch)"
    )
    parser.add_argument("--progress-every-seconds", type=float, default=5.0)
    parser.add_argument(
        "--max-failures",
        type=int,
        help="worker-group restarts from the newest checkpoint (default: the spec's training.maxFailures)",
    )
    parser.add_argument("--samples-per-prompt", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.request:
            spec = load_request(args.request).spec
        else:
            text = args.spec_json
            if args.spec_file:
                with open(args.spec_file, encoding="utf-8") as f:
                    text = f.read()
            spec = parse_spec(json.loads(text))
        storage_config = S3Config.from_env()
    except (ValidationError, StorageError, OSError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from .train_driver import TrainOptions, local_worker_defaults, train
    from .train_errors import TrainingError

    spec = local_worker_defaults().resolve(spec)

    def show(progress: dict) -> None:
        if args.quiet:
            return
        step, total = progress.get("step"), progress.get("total_steps")
        loss = progress.get("loss")
        print(
            f"[{progress.get('status', '?')}]"
            + (f" step {step}/{total}" if step is not None and total else "")
            + (f" loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
            + (f" {progress['tokens_per_second']:.0f} tok/s" if progress.get("tokens_per_second") else "")
            + (f" eta {progress['eta_seconds']:.0f}s" if progress.get("eta_seconds") is not None else ""),
            file=sys.stderr,
            flush=True,
        )

    try:
        options = TrainOptions(
            ray_address=args.ray_address,
            num_cpus=args.num_cpus,
            cpus_per_worker=args.cpus_per_worker,
            ray_temp_dir=args.ray_temp_dir,
            checkpoint_every_steps=args.checkpoint_every_steps,
            progress_every_seconds=args.progress_every_seconds,
            max_failures=spec.training.max_failures if args.max_failures is None else args.max_failures,
            samples_per_prompt=args.samples_per_prompt,
        )
        result = train(spec, storage_config, options, on_progress=show)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = dataclasses.asdict(result)
    summary.pop("training")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

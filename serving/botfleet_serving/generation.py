"""Generation with one bot: load its saved model (from a local folder or the object store)
and continue prompts with its saved generation settings, or the caller's.

Prompts are continued the way the bot was trained: after the ``<|endoftext|>`` prefix
saved in its ``task_specific_params`` (each post in the training text follows one).
Generation in a process is one at a time (a lock): the model uses every core it is given,
and a request's seed must seed only its own sampling.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from botfleet.errors import one_line
from botfleet.storage import NotFound, Storage, StorageError, parse_uri

STOP, LENGTH = "stop", "length"  # OpenAI's finish reasons: the bot ended its post; the token limit
_GENERATE_LOCK = threading.Lock()


class BotFilesError(RuntimeError):
    """A bot's model files are missing or cannot be loaded; the message says which and why."""


class PromptTooLong(ValueError):
    """The prompt leaves no room to generate in the model's context."""


@dataclass(frozen=True)
class Generations:
    texts: list[str]  # the continuations, without the prompt
    finish_reasons: list[str]
    prompt_tokens: int
    completion_tokens: int


class LoadedBot:
    """A bot's model and tokenizer in memory, with its saved generation settings."""

    def __init__(self, folder: str, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder).to(self.device).eval()
        config = self.model.config
        settings = (getattr(config, "task_specific_params", None) or {}).get("text-generation", {})
        self.prefix = settings.get("prefix") or ""
        self.context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 1024
        self.eos = self.tokenizer.eos_token_id
        self._prefix_len = len(self._encode(self.prefix)) if self.prefix else 0

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def plan(self, prompt: str, max_new_tokens: int | None, cap: int | None = None) -> tuple[list[int], int]:
        """The input ids and how many tokens to generate: ``max_new_tokens``, else the saved
        ``max_length`` less the input, within ``cap`` and the model's context."""
        ids = self._encode(self.prefix + prompt)
        room = self.context - len(ids)
        if room < 1:
            raise PromptTooLong(f"the prompt is {len(ids)} tokens; this bot's context is {self.context}")
        if max_new_tokens is None:
            saved = self.model.generation_config.max_length or self.context
            max_new_tokens = max(16, saved - len(ids))
            if cap is not None:
                max_new_tokens = min(max_new_tokens, cap)
        return ids, min(max_new_tokens, room)

    def _settings(
        self, inputs: int, new_tokens: int, temperature: float | None, top_p: float | None, max_time: float | None
    ) -> dict:
        """generate()'s arguments: lengths in total tokens, as the saved settings give them
        (so they don't clash with them), and the request's sampling over the saved one."""
        saved_min = self.model.generation_config.min_length or 0
        kwargs: dict = {
            "pad_token_id": self.eos,
            "max_length": inputs + new_tokens,
            "min_length": min(saved_min, inputs + new_tokens),
        }
        if temperature == 0.0:  # OpenAI's convention: deterministic, the most likely token
            kwargs["do_sample"] = False
        elif temperature is not None:
            kwargs.update(do_sample=True, temperature=temperature)
        if top_p is not None and temperature != 0.0:
            kwargs["top_p"] = top_p
        if max_time is not None:
            kwargs["max_time"] = max_time
        return kwargs

    def generate(
        self,
        prompt: str,
        n: int = 1,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_time: float | None = None,
        cap: int | None = None,
    ) -> Generations:
        """``n`` continuations of ``prompt`` (defaults: the bot's saved settings)."""
        import torch

        ids, new_tokens = self.plan(prompt, max_new_tokens, cap)
        inputs = torch.tensor([ids], device=self.device)
        settings = self._settings(len(ids), new_tokens, temperature, top_p, max_time)
        out = self._model_generate(inputs, seed, num_return_sequences=n, **settings)
        texts, reasons, produced = [], [], 0
        prompt_text = self.tokenizer.decode(ids[self._prefix_len :], skip_special_tokens=True)
        for row in out.tolist():
            new = row[len(ids) :]
            ended = self.eos in new
            new = new[: new.index(self.eos)] if ended else new
            produced += len(new)
            full = self.tokenizer.decode(ids[self._prefix_len :] + new, skip_special_tokens=True)
            texts.append(full[len(prompt_text) :] if full.startswith(prompt_text) else self.tokenizer.decode(new))
            reasons.append(STOP if ended else LENGTH)
        return Generations(texts, reasons, len(ids) - self._prefix_len, produced)

    def _model_generate(self, inputs, seed: int | None, **options):
        """One call of the model's generate, seeded, one at a time in this process (so that a
        seed gives the same text whatever else is asked)."""
        import torch

        with _GENERATE_LOCK, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            return self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **options)

    def stream(
        self,
        prompt: str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_time: float | None = None,
        cap: int | None = None,
    ) -> Iterator[tuple[str, str | None]]:
        """One continuation, piece by piece: ``(text, None)`` then ``("", finish_reason)``."""
        import torch
        from transformers import TextIteratorStreamer

        ids, new_tokens = self.plan(prompt, max_new_tokens, cap)
        inputs = torch.tensor([ids], device=self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        produced: list[int] = []

        def run() -> None:
            settings = self._settings(len(ids), new_tokens, temperature, top_p, max_time)
            out = self._model_generate(inputs, seed, streamer=streamer, **settings)
            produced.extend(out[0, len(ids) :].tolist())

        worker = threading.Thread(target=run, name="generate-stream", daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece, None
        worker.join()
        yield "", STOP if self.eos in produced else LENGTH


def load_bot(storage: Storage, files_uri: str, device: str | None = None) -> LoadedBot:
    """The bot whose saved model is in ``files_uri`` (``s3://`` or ``file://``), or
    :class:`BotFilesError` saying what is missing or broken."""
    try:
        location = parse_uri(files_uri)
        if not storage.exists(f"{files_uri.rstrip('/')}/config.json"):
            raise BotFilesError(f"its model files are missing ({files_uri}/config.json not found)")
        if location.scheme == "file":
            return _load(location.path, files_uri, device)
        with tempfile.TemporaryDirectory(prefix="botfleet-bot-") as local:
            storage.download_dir(files_uri, local)
            return _load(local, files_uri, device)  # in memory once loaded: the copy can go
    except (NotFound, StorageError) as error:
        raise BotFilesError(f"its model files could not be read: {one_line(error, 300)}") from error


def _load(folder: str, files_uri: str, device: str | None) -> LoadedBot:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load on a terminal or in the replica's log
    try:
        return LoadedBot(folder, device)
    except Exception as error:  # noqa: BLE001 - a corrupt file raises anything from OSError to KeyError
        raise BotFilesError(f"its model files in {files_uri} could not be loaded: {one_line(error, 300)}") from error

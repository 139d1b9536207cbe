"""The parrot check, measured: how many of a fixed set of samples repeat the training text.

An index of every :data:`~botfleet.parrot.RUN_TOKENS`-token run of the training posts (a
set of token tuples, built once: memory follows the text, each sample is then one pass),
then seeded samples from the trained model, each looked up run by run. The verdict and the
report's format are :mod:`botfleet.parrot`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from botfleet.parrot import RUN_TOKENS, ParrotReport

from .final_model import GENERATION_SETTINGS, SAMPLE_PROMPTS

EOT = "<|endoftext|>"
# The fixed set of samples: a post from nothing (the likeliest to be remembered) and the
# card's prompts, several each, seeded.
PARROT_PROMPTS = ("", *SAMPLE_PROMPTS)
SAMPLES_PER_PROMPT = 8
NEW_TOKENS = 48  # about a post
TOKENIZE_BATCH = 1000


class NgramIndex:
    """Every run of ``n`` consecutive tokens of some texts."""

    def __init__(self, n: int = RUN_TOKENS) -> None:
        self.n = n
        self.runs: set[tuple[int, ...]] = set()

    def add(self, tokens: Sequence[int]) -> None:
        n = self.n
        self.runs.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))

    def longest_copied_run(self, tokens: Sequence[int]) -> int:
        """Tokens in the longest stretch of ``tokens`` whose every ``n``-run is indexed
        (0 when none is): k overlapping indexed runs in a row cover n + k - 1 tokens."""
        n, longest, streak = self.n, 0, 0
        for i in range(len(tokens) - n + 1):
            streak = streak + 1 if tuple(tokens[i : i + n]) in self.runs else 0
            if streak:
                longest = max(longest, n + streak - 1)
        return longest


def posts(train_text: str) -> list[str]:
    """The distinct posts of a train.txt (the epochs' copies are one post each)."""
    return list(dict.fromkeys(p.strip() for p in train_text.split(EOT) if p.strip()))


def index_posts(texts: Iterable[str], tokenizer, n: int = RUN_TOKENS) -> NgramIndex:
    index = NgramIndex(n)
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == TOKENIZE_BATCH:
            _index_batch(index, batch, tokenizer)
            batch = []
    _index_batch(index, batch, tokenizer)
    return index


def _index_batch(index: NgramIndex, batch: list[str], tokenizer) -> None:
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            index.add(ids)


def measure(samples: Iterable[Sequence[int]], index: NgramIndex) -> ParrotReport:
    runs = [index.longest_copied_run(tokens) for tokens in samples]
    return ParrotReport(
        samples=len(runs), copying=sum(1 for r in runs if r), run_tokens=index.n, longest_run=max(runs, default=0)
    )


def sample_tokens(model, tokenizer, *, seed: int) -> list[list[int]]:
    """The fixed samples' tokens (prompt and continuation, up to the first end of text)."""
    import torch

    eos = tokenizer.eos_token_id
    limit = getattr(model.config, "n_positions", None) or GENERATION_SETTINGS["max_length"]
    samples = []
    for i, prompt in enumerate(PARROT_PROMPTS):
        ids = tokenizer(EOT + prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
        torch.manual_seed(seed + i)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_p=GENERATION_SETTINGS["top_p"],
                temperature=GENERATION_SETTINGS["temperature"],
                max_new_tokens=min(NEW_TOKENS, limit - ids.shape[1]),
                num_return_sequences=SAMPLES_PER_PROMPT,
                pad_token_id=eos,
            )
        for row in out.tolist():
            text = row[1:]  # without the leading end-of-text
            samples.append(text[: text.index(eos)] if eos in text else text)
    return samples


def parrot_check(model_folder: str, train_text: str, *, seed: int = 0) -> ParrotReport:
    """Measure the model in ``model_folder`` against the posts of ``train_text``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    model.eval()
    index = index_posts(posts(train_text), tokenizer)
    return measure(sample_tokens(model, tokenizer, seed=seed), index)

"""The fine-tuned model as the workers leave it: fp32 weights gathered from the ZeRO shards,
saved in Hugging Face format with the reference's generation settings, and seeded sample
predictions made with those settings (what the pipeline would show)."""

from __future__ import annotations

from .train_errors import TrainingError

# The reference's generation settings, saved with the model.
GENERATION_SETTINGS = {
    "do_sample": True,
    "min_length": 10,
    "max_length": 160,
    "temperature": 1.0,
    "top_p": 0.95,
    "prefix": "<|endoftext|>",
}
TASK_SPECIFIC_PARAMS = {"text-generation": GENERATION_SETTINGS}
SAMPLE_PROMPTS = ("My dream is", "I think that", "The best thing about")


def save_final_model(engine, tokenizer, folder: str, rank: int) -> None:
    """The trained weights in fp32, gathered from the ZeRO shards (every rank takes part:
    the gathers are collective), saved by rank 0 into ``folder`` in Hugging Face format,
    with the generation settings in ``task_specific_params`` and, because transformers 5
    pipelines ignore that, also in ``generation_config.json``."""
    import torch
    from deepspeed.utils import safe_get_full_fp32_param
    from transformers import AutoModelForCausalLM

    state = {}
    for name, param in engine.module.named_parameters():
        full = safe_get_full_fp32_param(param)  # ZeRO-1/2/3 and bf16: the fp32 master
        if full is None:  # plain fp32 parameters (no ZeRO partitioning of them)
            full = param.detach()
        if rank == 0:
            state[name] = full.detach().to("cpu", torch.float32).clone()
    if rank != 0:
        return
    config = engine.module.config
    config.task_specific_params = TASK_SPECIFIC_PARAMS
    final = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = final.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _is_tied(final, k)]
    if missing or unexpected:
        raise TrainingError(f"final model assembly failed: missing {missing[:5]}, unexpected {unexpected[:5]}")
    final.tie_weights()
    generation = final.generation_config
    for key in ("do_sample", "min_length", "max_length", "temperature", "top_p"):
        setattr(generation, key, GENERATION_SETTINGS[key])
    if generation.max_length and getattr(config, "n_positions", None):
        generation.max_length = min(generation.max_length, config.n_positions)
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.eos_token_id
    final.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _is_tied(model, key: str) -> bool:
    """Whether ``key`` is a weight tied to another (e.g. GPT-2's lm_head to the embeddings)."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    if isinstance(tied, dict):
        return key in tied
    return key in tied or key.startswith("lm_head.")


def sample_predictions(folder: str, *, seed: int, per_prompt: int, device=None) -> list[dict]:
    """Seeded predictions for :data:`SAMPLE_PROMPTS` by the model saved in ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    if device is not None:
        model = model.to(device)
    model.eval()
    limit = getattr(model.config, "n_positions", None) or GENERATION_SETTINGS["max_length"]
    prefix_ids = tokenizer(GENERATION_SETTINGS["prefix"], add_special_tokens=False)["input_ids"]
    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        ids = tokenizer(GENERATION_SETTINGS["prefix"] + prompt, return_tensors="pt", add_special_tokens=False)
        ids = {k: v.to(model.device) for k, v in ids.items()}
        torch.manual_seed(seed + i)
        with torch.no_grad():
            out = model.generate(
                **ids,
                do_sample=True,
                top_p=GENERATION_SETTINGS["top_p"],
                temperature=GENERATION_SETTINGS["temperature"],
                min_length=GENERATION_SETTINGS["min_length"],
                max_length=min(GENERATION_SETTINGS["max_length"], limit),
                num_return_sequences=per_prompt,
                pad_token_id=tokenizer.eos_token_id,
            )
        for row in out:
            text = tokenizer.decode(row[len(prefix_ids) :], skip_special_tokens=True)
            samples.append({"prompt": prompt, "prediction": text})
    return samples

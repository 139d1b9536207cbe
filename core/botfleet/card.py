"""The model card (README.md) of a bot, in huggingtweets' format.

The cards huggingtweets published (see the seeds in the docs) are what people and tools
know, so the structure is kept: front matter, the avatar header, then the sections
"How does it work?", "Training data", "Training procedure", "How to use", "Limitations
and bias" and "About". What changes is every link: a botfleet card points at what really
exists for this bot, its W&B run and artifacts when it has an online tracking run, and
otherwise the object-store locations of its dataset, checkpoints and model.

Pure and torch-free on purpose: the operator renders the card too (when a successful job
left none), and it never imports the training stack.
"""

from __future__ import annotations

import dataclasses
import html
import os
from dataclasses import dataclass

from botfleet.api import BotSpec, Handle
from botfleet.parrot import ParrotReport

HUGGINGTWEETS_URL = "https://github.com/borisdayma/huggingtweets"
WANDB_ARTIFACTS_DOCS = "https://docs.wandb.com/artifacts"
WIDGET_PROMPT = "My dream is"
# The data table's rows (label, count in stats.json), in the card and in `botfleet prepare`'s table.
DATA_ROWS = (
    ("Tweets downloaded", "downloaded"),
    ("Retweets", "retweets"),
    ("Short tweets", "short"),
    ("Tweets kept", "kept"),
)


@dataclass(frozen=True)
class CardLinks:
    """Where this bot's things really are; the card links nothing else of its own.

    ``tracking_run_url`` is the W&B training run (online tracking only: an offline run has
    no URL until someone syncs it). ``tracking_artifacts_url`` is the page listing the
    data artifacts (huggingtweets linked the preprocess run's artifacts); it defaults to
    the training run's artifacts page. ``model_for_pipeline`` is what the "How to use"
    snippet passes as ``model=``: a local folder or the model's s3:// URI.
    ``thumbnail_url`` is None when there is no picture (a card the operator writes);
    ``loss_curve_url`` likewise for the loss curve. Both are shown in the body too, so
    relative ones (next to the card) show on the page, in a folder and on the Hub alike.
    """

    dataset_uri: str
    checkpoints_uri: str
    model_uri: str
    thumbnail_url: str | None
    model_for_pipeline: str
    tracking_run_url: str | None = None
    tracking_artifacts_url: str | None = None
    hub_url: str | None = None  # the Hub repository's page, for the card published there
    loss_curve_url: str | None = None

    @property
    def on_hub(self) -> bool:
        return bool(self.hub_url)

    @property
    def tracked(self) -> bool:
        return bool(self.tracking_run_url)

    @property
    def data_url(self) -> str:
        if not self.tracked:
            return self.dataset_uri
        return self.tracking_artifacts_url or run_artifacts_url(self.tracking_run_url)

    @property
    def final_model_url(self) -> str:
        return run_artifacts_url(self.tracking_run_url) if self.tracked else self.model_uri


def hub_card_links(links: CardLinks, repo: str, endpoint: str) -> CardLinks:
    """The links of the card published as ``repo`` on the Hub at ``endpoint``: the
    thumbnail and the model are the Hub's files, "How to use" loads ``repo``; the object
    store's locations, which a Hub reader cannot open, are not linked."""
    page = f"{endpoint.rstrip('/')}/{repo}"
    return dataclasses.replace(
        links,
        thumbnail_url=f"{page}/resolve/main/predictions.png" if links.thumbnail_url else None,
        model_uri=f"{page}/tree/main",
        model_for_pipeline=repo,
        hub_url=page,
    )


def run_artifacts_url(run_url: str) -> str:
    """A W&B run's artifacts tab, the page the seeds link as "the final model"."""
    return run_url.rstrip("/") + "/artifacts"


# --------------------------------------------------------------------------- helpers


def display_label(handle: Handle, stats: dict) -> str:
    """The name shown for a handle: the request's displayName, else the name the data
    stage found for the account, else the handle itself."""
    entry = handle_stats(handle, stats)
    return handle.display_name or entry.get("display_name") or handle.handle.lstrip("@")


def handle_stats(handle: Handle, stats: dict) -> dict:
    """The data stage's counts for a handle (keyed by the normalized handle)."""
    per_handle = stats.get("handles", {})
    return per_handle.get(handle.name) or per_handle.get(handle.handle.lstrip("@")) or {}


def table_cell(text: str) -> str:
    """A Markdown table cell: a bare `|` would split the cell, a newline end the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def profile_url(handle: Handle) -> str:
    """Where the account's posts can be seen, by source; a dataset has no profile, so it
    links to the dataset file the posts came from."""
    name = handle.handle.lstrip("@")
    source = handle.source
    if source.kind == "mastodon":
        return f"{source.mastodon.instance.rstrip('/')}/@{name}"
    if source.kind == "bluesky":
        return f"https://bsky.app/profile/{name}"
    if source.kind == "dataset":
        return source.dataset.uri
    return f"https://twitter.com/{name}"  # archive and twitter: a Twitter/X account


def base_model_url(base_model: str) -> str:
    """The base model's page: an object-store folder as is, a hub id on the hub."""
    if "://" in base_model:
        return base_model
    return f"https://huggingface.co/{base_model}"


def base_model_link(base_model: str, text: str, links: CardLinks) -> str:
    """``text`` linked to the base model's page; unlinked on the Hub when the base model is an
    object-store folder, which a Hub reader cannot open."""
    if links.on_hub and "://" in base_model:
        return text
    return f"[{text}]({base_model_url(base_model)})"


def base_model_name(base_model: str) -> str:
    return "GPT-2" if base_model == "gpt2" else base_model


def number(value, digits: int = 4) -> str:
    """Metrics for people: 4 significant digits; missing ones say so."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


# --------------------------------------------------------------------------- blocks


def front_matter(links: CardLinks) -> str:
    # `huggingtweets` stays the first tag: tools and people search bots by it.
    thumbnail = [f"thumbnail: {links.thumbnail_url}"] if links.thumbnail_url else []
    return "\n".join(
        [
            "---",
            "language: en",
            *thumbnail,
            "tags:",
            "- huggingtweets",
            "- botfleet",
            "widget:",
            f'- text: "{WIDGET_PROMPT}"',
            "---",
        ]
    )


def avatar(handle: Handle) -> str:
    # No profile images are downloaded (sources may not expose them, and a card should not
    # hotlink a third party's CDN), so each avatar is a neutral grey circle with the
    # handle's initial: the seeds' round-avatar layout without a background-image.
    initial = html.escape(handle.handle.lstrip("@")[:1].upper())
    return (
        "        <div\n"
        '            style="display:inherit; margin-left: 4px; margin-right: 4px; width: 92px; height:92px; '
        "border-radius: 50%; background-size: cover; background-color: #CBD5E0; color: #4A5568; "
        'font-size: 40px; font-weight: 800; text-align: center; line-height: 92px">'
        f"{initial}\n"
        "        </div>"
    )


def header(spec: BotSpec, stats: dict) -> str:
    kind = "AI BOT" if len(spec.handles) == 1 else "AI CYBORG"
    names = " & ".join(html.escape(display_label(h, stats)) for h in spec.handles)
    return "\n".join(
        [
            '<div class="inline-flex flex-col" style="line-height: 1.5;">',
            '    <div class="flex">',
            *(avatar(h) for h in spec.handles),
            "    </div>",
            f'    <div style="text-align: center; margin-top: 3px; font-size: 16px; font-weight: 800">'
            f"🤖 {kind} 🤖</div>",
            f'    <div style="text-align: center; font-size: 16px; font-weight: 800">{names}</div>',
            f'    <div style="text-align: center; font-size: 14px;">@{spec.model_id} bot</div>',
            "</div>",
        ]
    )


def intro() -> str:
    return (
        f"I was made with botfleet, the production successor of [huggingtweets]({HUGGINGTWEETS_URL}).\n\n"
        "Create your own bot based on your favorite user with a `BotRequest`!"
    )


def how_it_works() -> str:
    return "\n".join(
        [
            "## How does it work?",
            "",
            "The model uses the following pipeline.",
            "",
            "1. The posts of each person are gathered (up to the most recent few thousand).",
            "2. Retweets are set aside, links are removed and short tweets are dropped.",
            "3. The tweets kept are written into one training text, balanced between people and "
            "reshuffled for every epoch.",
            "4. A pre-trained language model is fine-tuned on that text, and sample predictions are "
            "generated from the result.",
        ]
    )


def data_table(spec: BotSpec, stats: dict) -> str:
    if len(spec.handles) == 1:
        columns = ["Quantity"]
    else:
        columns = [table_cell(display_label(h, stats)) for h in spec.handles]
    lines = [
        "| Data | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for row, key in DATA_ROWS:
        values = [number(handle_stats(h, stats).get(key)) for h in spec.handles]
        lines.append(f"| {row} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def trained_on(spec: BotSpec, stats: dict, links: CardLinks) -> str:
    if len(spec.handles) == 1:
        handle = spec.handles[0]
        name = handle.handle.lstrip("@")
        if links.on_hub and handle.source.kind == "dataset":  # a file in the object store
            return f"The model was trained on @{name}'s tweets."
        return f"The model was trained on [@{name}'s tweets]({profile_url(handle)})."
    names = " & ".join(display_label(h, stats) for h in spec.handles)
    return f"The model was trained on tweets from {names}."


def explore_data(links: CardLinks) -> str:
    if links.tracked:
        return (
            f"[Explore the data]({links.data_url}), which is tracked with "
            f"[W&B artifacts]({WANDB_ARTIFACTS_DOCS}) at every step of the pipeline."
        )
    if links.on_hub:
        return "The posts themselves are not published with the model: only their counts above."
    return (
        f"[Explore the data]({links.data_url}): the dataset this bot was trained on is kept in "
        f"the object store at `{links.dataset_uri}`."
    )


def training_data(spec: BotSpec, stats: dict, links: CardLinks) -> str:
    return "\n\n".join(
        ["## Training data", trained_on(spec, stats, links), data_table(spec, stats), explore_data(links)]
    )


def hyperparameters(spec: BotSpec, training: dict) -> list[tuple[str, str]]:
    """The settings the job really used (training.json), the request's where it is silent."""
    used = training.get("hyperparameters", {})
    asked = spec.training

    def pick(key: str, default):
        return number(used.get(key, default), digits=6)

    return [
        ("Learning rate", pick("learning_rate", asked.learning_rate)),
        ("Epochs", pick("epochs", asked.epochs)),
        ("Block size", pick("block_size", asked.block_size)),
        ("Batch size per worker", pick("batch_size_per_worker", asked.batch_size_per_worker)),
        ("Gradient accumulation", pick("gradient_accumulation", asked.gradient_accumulation)),
        ("Workers", pick("workers", asked.workers)),
        ("ZeRO stage", pick("zero_stage", asked.zero_stage)),
        ("Precision", pick("precision", asked.precision)),
        ("Seed", pick("seed", asked.seed)),
    ]


def hyperparameter_table(spec: BotSpec, training: dict) -> str:
    rows = [f"| {table_cell(name)} | {table_cell(value)} |" for name, value in hyperparameters(spec, training)]
    return "\n".join(["| Hyperparameter | Value |", "| --- | --- |", *rows])


def metrics_list(training: dict) -> str:
    steps = training.get("steps")
    after_steps = f" (after {steps} steps)" if steps is not None else ""
    return "\n".join(
        [
            f"- Final training loss: {number(training.get('train_loss'))}{after_steps}",
            f"- Validation loss: {number(training.get('valid_loss_before'))}"
            f" -> {number(training.get('valid_loss_after'))}",
            f"- Validation perplexity: {number(training.get('perplexity_before'))}"
            f" -> {number(training.get('perplexity_after'))}",
            *parrot_line(training),
        ]
    )


def parrot_line(training: dict) -> list[str]:
    report = ParrotReport.from_dict(training.get("parrot"))
    return [f"- Parrot check: {report.summary()}"] if report else []


def where_recorded(links: CardLinks) -> str:
    if links.tracked:
        return (
            f"Hyperparameters and metrics are recorded in the [W&B training run]({links.tracking_run_url}) "
            "for full transparency and reproducibility.\n\n"
            f"At the end of training, [the final model]({links.final_model_url}) is logged and versioned."
        )
    if links.on_hub:
        return (
            "Hyperparameters and metrics are listed above and in"
            f" [training.json]({links.hub_url}/blob/main/training.json) (this bot has no W&B run to link).\n\n"
            f"At the end of training, [the final model]({links.model_uri}) is published in this repository."
        )
    return (
        "Hyperparameters and metrics are listed above (this bot has no W&B run to link); "
        f"the checkpoints written during training are kept at [{links.checkpoints_uri}]({links.checkpoints_uri}).\n\n"
        f"At the end of training, [the final model]({links.final_model_url}) is saved at `{links.model_uri}`."
    )


def pictures(links: CardLinks) -> list[str]:
    """The loss curve and the sample predictions, where the job drew them."""
    shown = [
        ("Training and validation loss by step", links.loss_curve_url),
        ("Sample predictions", links.thumbnail_url),
    ]
    return [f"![{alt}]({url})" for alt, url in shown if url]


def training_procedure(spec: BotSpec, training: dict, links: CardLinks) -> str:
    base = training.get("base_model") or spec.training.base_model
    return "\n\n".join(
        [
            "## Training procedure",
            f"The model is based on a pre-trained {base_model_link(base, base_model_name(base), links)} "
            f"which is fine-tuned on @{spec.model_id}'s tweets.",
            hyperparameter_table(spec, training),
            metrics_list(training),
            *pictures(links),
            where_recorded(links),
        ]
    )


def how_to_use(links: CardLinks) -> str:
    # repr() quotes the location the way the seeds do ('...') and stays valid Python if the
    # path itself holds a quote.
    snippet = "\n".join(
        [
            "```python",
            "from transformers import pipeline",
            "generator = pipeline('text-generation',",
            f"                     model={links.model_for_pipeline!r})",
            f'generator("{WIDGET_PROMPT}", num_return_sequences=5)',
            "```",
        ]
    )
    parts = ["## How to use", "You can use this model directly with a pipeline for text generation:", snippet]
    if links.model_uri.startswith("s3://") and not os.path.isabs(links.model_for_pipeline):
        # transformers does not read s3:// itself: say where the folder comes from.
        parts.insert(
            1,
            f"The model is stored at `{links.model_uri}`; copy that folder to `./{links.model_for_pipeline}`"
            " (`botfleet run` does) and:",
        )
    return "\n\n".join(parts)


def limitations(spec: BotSpec, training: dict, links: CardLinks) -> str:
    base = training.get("base_model") or spec.training.base_model
    if base == "gpt2":
        inherited = "[the same limitations and bias as GPT-2](https://huggingface.co/gpt2#limitations-and-bias)"
    else:
        inherited = f"the same limitations and bias as its base model, {base_model_link(base, base, links)}"
    whose = "user's tweets" if len(spec.handles) == 1 else "users' tweets"
    return "\n\n".join(
        [
            "## Limitations and bias",
            f"The model suffers from {inherited}.",
            f"In addition, the data present in the {whose} further affects the text generated by the model.",
        ]
    )


def about() -> str:
    return "\n\n".join(
        [
            "## About",
            "*Built by botfleet*",
            f"botfleet descends from [huggingtweets]({HUGGINGTWEETS_URL}) by Boris Dayma,"
            " whose model cards this one follows.",
        ]
    )


def render_card(spec: BotSpec, stats: dict, training: dict, links: CardLinks) -> str:
    """README.md for the bot: the seeds' structure, this bot's facts and links."""
    blocks = [
        front_matter(links),
        header(spec, stats),
        intro(),
        how_it_works(),
        training_data(spec, stats, links),
        training_procedure(spec, training, links),
        how_to_use(links),
        limitations(spec, training, links),
        about(),
    ]
    return "\n\n".join(blocks) + "\n"

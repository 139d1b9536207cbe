"""The page's HTML, from facts to text: pure functions, no I/O.

Every text that reaches the page from a post, a display name, a generation, a file or the
cluster goes through :func:`esc` (or markdown-it with raw HTML off, for the card). The page
runs no inline script and sets no inline style: the Content-Security-Policy (see app.py)
allows neither, so anything that slips through runs nothing.
"""

from __future__ import annotations

import html
import math
import urllib.parse
from collections.abc import Iterable

from botfleet.artifacts import COUNTS, Progress, Stats

from .source import Bot

ASSETS = "/assets"  # page.css and page.js
# The gallery and a bot's page reload themselves this often while something trains.
REFRESH_SECONDS = 10
PHASES = ("pending", "preparing", "training", "publishing", "succeeded", "failed", "suspended")
ACTIVE = {"pending", "preparing", "training", "publishing"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def bot_url(model_id: str) -> str:
    return "/bots/" + urllib.parse.quote(model_id, safe="")


def file_url(model_id: str, key: str) -> str:
    return f"{bot_url(model_id)}/files/" + urllib.parse.quote(key, safe="/")


# --------------------------------------------------------------------------- small parts


def duration(seconds: float | None) -> str:
    """An ETA for people: ``42s``, ``3m 05s``, ``1h 02m``; empty when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def display_names(bot: Bot) -> list[str]:
    """The request's display names on a cluster, else the names the data stage found."""
    if bot.request is not None and bot.request.display_names:
        return list(bot.request.display_names)
    stats = bot.files.stats
    return [h.display_name for h in (stats.handles.values() if stats else ()) if h.display_name]


def progress_bar(progress: Progress | None) -> str:
    """A ``<progress>`` element (no inline style needed) with step and ETA; empty without steps."""
    if progress is None or not progress.total_steps:
        return ""
    step = min(progress.step or 0, progress.total_steps)
    eta = duration(progress.eta_seconds)
    eta_text = f", ETA {esc(eta)}" if eta and progress.status == "training" else ""
    return (
        f'<div class="progress"><progress max="{progress.total_steps}" value="{step}"></progress>'
        f'<span class="progress-text">step {step}/{progress.total_steps}{eta_text}</span></div>'
    )


def counts_table(stats: Stats | None) -> str:
    """Per handle: posts downloaded, retweets, short ones dropped, kept."""
    if stats is None or not stats.handles:
        return ""
    head = "".join(f"<th>{esc(name)}</th>" for name in COUNTS)
    rows = "".join(
        f"<tr><th>@{esc(handle)}</th>" + "".join(f"<td>{getattr(h, n)}</td>" for n in COUNTS) + "</tr>"
        for handle, h in sorted(stats.handles.items())
    )
    return f'<table class="counts"><tr><th>handle</th>{head}</tr>{rows}</table>'


def samples_list(samples: Iterable[dict], limit: int | None = None) -> str:
    items = [s for s in samples][:limit]
    if not items:
        return ""
    rows = "".join(
        f'<li><span class="prompt">{esc(s.get("prompt"))}</span> '
        f'<span class="prediction">{esc(s.get("prediction"))}</span></li>'
        for s in items
    )
    return f'<ul class="samples">{rows}</ul>'


def phase_badge(phase: str) -> str:
    known = phase if phase in PHASES else "unknown"
    return f'<span class="phase phase-{known}">{esc(phase)}</span>'


def thumbnail(bot: Bot) -> str:
    """The predictions picture of a finished bot (the job draws it with its samples)."""
    if not (bot.files.finished and bot.samples):
        return ""
    return (
        f'<a href="{esc(bot_url(bot.model_id))}"><img class="thumbnail" '
        f'src="{esc(file_url(bot.model_id, "model/predictions.png"))}" alt="sample predictions of '
        f'{esc(bot.model_id)}"></a>'
    )


def document(title: str, body: str, *, refresh: bool = False) -> str:
    """A whole page: the stylesheet and script from the page's own files, nothing inline."""
    meta_refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_refresh}<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{ASSETS}/page.css">'
        f'<script src="{ASSETS}/page.js" defer></script></head>'
        f'<body><header><a class="home" href="/">botfleet</a></header><main>{body}</main></body></html>\n'
    )


# --------------------------------------------------------------------------- the gallery


def gallery_entry(bot: Bot) -> str:
    names = ", ".join(display_names(bot))
    return (
        f'<li class="bot" data-model-id="{esc(bot.model_id)}">'
        f"{thumbnail(bot)}"
        f'<h2><a href="{esc(bot_url(bot.model_id))}">{esc(bot.model_id)}</a> {phase_badge(bot.phase)}</h2>'
        f'<p class="names">{esc(names)}</p>'
        f"{progress_bar(bot.files.progress) if bot.phase in ACTIVE else ''}"
        f"{counts_table(bot.files.stats)}"
        f"{samples_list(bot.samples, limit=3)}"
        "</li>"
    )


def phase_filter(bots: list[Bot], chosen: str | None) -> str:
    current = ' aria-current="page"'
    links = [f'<a href="/"{current if chosen is None else ""}>all ({len(bots)})</a>']
    for phase in PHASES:
        count = sum(1 for b in bots if b.phase == phase)
        links.append(f'<a href="/?phase={phase}"{current if phase == chosen else ""}>{phase} ({count})</a>')
    return '<nav class="filter">' + " ".join(links) + "</nav>"


def gallery_page(bots: list[Bot], phase: str | None = None) -> str:
    """``/``: every bot (or those in ``phase``, one of :data:`PHASES`), newest facts first;
    it reloads itself while one trains."""
    chosen = phase if phase in PHASES else None
    shown = [b for b in bots if chosen is None or b.phase == chosen]
    entries = "".join(gallery_entry(b) for b in shown) or '<p class="empty">No bots here yet.</p>'
    body = f'<h1>The fleet</h1>{phase_filter(bots, chosen)}<ul class="gallery">{entries}</ul>'
    return document("botfleet: the fleet", body, refresh=any(b.phase in ACTIVE for b in bots))


# --------------------------------------------------------------------------- a bot's page


def conditions_table(conditions: Iterable[dict]) -> str:
    rows = "".join(
        f"<tr><td>{esc(c.get('type'))}</td><td>{esc(c.get('status'))}</td><td>{esc(c.get('reason'))}</td>"
        f"<td>{esc(c.get('message'))}</td><td>{esc(c.get('lastTransitionTime'))}</td></tr>"
        for c in conditions
    )
    if not rows:
        return ""
    return (
        '<h2>Conditions</h2><table class="conditions"><tr><th>type</th><th>status</th><th>reason</th>'
        f"<th>message</th><th>since</th></tr>{rows}</table>"
    )


def events_table(events: Iterable[dict]) -> str:
    rows = "".join(
        f"<tr><td>{esc(e.get('type'))}</td><td>{esc(e.get('reason'))}</td><td>{esc(e.get('message'))}</td>"
        f"<td>{esc(e.get('time'))}</td></tr>"
        for e in events
    )
    if not rows:
        return ""
    head = "<tr><th>type</th><th>reason</th><th>message</th><th>time</th></tr>"
    return f'<h2>Events</h2><table class="events">{head}{rows}</table>'


def request_facts(bot: Bot) -> str:
    request = bot.request
    if request is None:
        return ""
    reason = f" ({esc(request.reason)})" if request.reason else ""
    return (
        f'<p class="request">BotRequest {esc(request.namespace)}/{esc(request.name)}: '
        f"{esc(request.phase)}{reason} {esc(request.message)}</p>"
        f"{conditions_table(request.conditions)}{events_table(request.events)}"
    )


def failure(bot: Bot) -> str:
    result = bot.files.result
    if result is None or result.succeeded or not result.finished:
        return ""
    return f'<p class="failure">Failed in {esc(result.stage)}: {esc(result.reason)}: {esc(result.error)}</p>'


def files_list(bot: Bot) -> str:
    if not bot.model_files:
        return ""
    items = "".join(
        f'<li><a href="{esc(file_url(bot.model_id, key))}">{esc(key.split("/", 1)[1])}</a></li>'
        for key in bot.model_files
    )
    return f'<h2>Model files</h2><ul class="files">{items}</ul>'


def try_it(bot: Bot, completions_url: str | None) -> str:
    """The "try it" box: page.js posts the prompt to the serving API and shows the text."""
    if completions_url is None or not bot.files.finished:
        return ""
    return (
        '<h2>Try it</h2><form class="try-it" id="try-it" '
        f'data-endpoint="{esc(completions_url)}" data-model="{esc(bot.model_id)}">'
        '<label for="try-it-prompt">Prompt</label> '
        '<input id="try-it-prompt" name="prompt" value="My dream is" maxlength="500"> '
        '<button type="submit">Generate</button>'
        '<pre id="try-it-output" aria-live="polite"></pre></form>'
    )


def bot_page(bot: Bot, card_html: str | None, completions_url: str | None = None) -> str:
    """``/bots/<model-id>``: state, the cluster's view, the card, the files, "try it"."""
    names = ", ".join(display_names(bot))
    card = f'<article class="card">{card_html}</article>' if card_html else '<p class="empty">No model card yet.</p>'
    body = (
        f'<h1>{esc(bot.model_id)} {phase_badge(bot.phase)}</h1><p class="names">{esc(names)}</p>'
        f"{progress_bar(bot.files.progress) if bot.phase in ACTIVE else ''}"
        f"{failure(bot)}{request_facts(bot)}{counts_table(bot.files.stats)}"
        f"{try_it(bot, completions_url)}{card}{files_list(bot)}"
    )
    return document(f"botfleet: {bot.model_id}", body, refresh=bot.phase in ACTIVE)


def not_found_page(what: str) -> str:
    return document("botfleet: not found", f'<h1>Not found</h1><p class="empty">{esc(what)}</p>')

"""predictions.png: the card's thumbnail, sample predictions drawn as an image.

huggingtweets showed a few "My dream is ..." completions as the model's thumbnail; this
draws the same thing with Pillow alone (no browser, no fonts to install): a title, then
each prompt and its prediction, wrapped to the image width. The output is deterministic
(same samples, same bytes), so re-running a stage does not change the card's image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

WIDTH = 1200
MARGIN = 48
TITLE_SIZE = 40
TEXT_SIZE = 26
LINE_GAP = 8
SAMPLE_GAP = 28

BACKGROUND = (255, 255, 255)
TITLE_COLOR = (17, 24, 39)
PROMPT_COLOR = (37, 99, 235)
PREDICTION_COLOR = (31, 41, 55)
RULE_COLOR = (226, 232, 240)


@dataclass(frozen=True)
class Line:
    text: str
    font: ImageFont.ImageFont
    color: tuple[int, int, int]
    gap_after: int
    rule_after: bool = False


def font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled default font: present everywhere Pillow is, so the image looks the
    # same on every worker. It has no emoji glyphs; those draw as boxes.
    return ImageFont.load_default(size=size)


def line_height(a_font: ImageFont.ImageFont) -> int:
    left, top, right, bottom = a_font.getbbox("Hg")
    return bottom


def wrap(text: str, a_font: ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap by drawn width; a word wider than the line is cut by characters."""
    lines: list[str] = []
    current = ""
    for word in " ".join(text.split()).split(" "):
        candidate = f"{current} {word}" if current else word
        if a_font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        for char in word:
            if current and a_font.getlength(current + char) > width:
                lines.append(current)
                current = ""
            current += char
    if current or not lines:
        lines.append(current)
    return lines


def layout(samples: list[dict], title: str) -> list[Line]:
    width = WIDTH - 2 * MARGIN
    title_font, text_font = font(TITLE_SIZE), font(TEXT_SIZE)
    lines = [Line(text, title_font, TITLE_COLOR, LINE_GAP) for text in wrap(title, title_font, width)]
    lines[-1] = Line(lines[-1].text, title_font, TITLE_COLOR, SAMPLE_GAP)
    for sample in samples:
        prompt = sample.get("prompt", "")
        prediction = sample.get("prediction", "")
        lines += [Line(text, text_font, PROMPT_COLOR, LINE_GAP) for text in wrap(prompt, text_font, width)]
        body = wrap(continuation(prompt, prediction), text_font, width)
        lines += [Line(text, text_font, PREDICTION_COLOR, LINE_GAP) for text in body]
        lines[-1] = Line(lines[-1].text, text_font, PREDICTION_COLOR, SAMPLE_GAP, rule_after=True)
    if samples:
        lines[-1] = Line(lines[-1].text, lines[-1].font, lines[-1].color, lines[-1].gap_after)
    return lines


def continuation(prompt: str, prediction: str) -> str:
    """What the model added: predictions usually repeat the prompt, already drawn above."""
    if prompt and prediction.startswith(prompt):
        added = prediction[len(prompt) :].strip()
        return "..." + added if added else "(nothing)"
    return prediction.strip() or "(nothing)"


def render_predictions_png(samples: list[dict], title: str, path: str | os.PathLike) -> tuple[int, int]:
    """Draw `title` and each sample's prompt (blue) and prediction into a PNG at `path`.

    Returns the image size: the width is fixed (WIDTH), the height grows with the text.
    """
    lines = layout(samples, title)
    height = MARGIN * 2 + sum(line_height(line.font) + line.gap_after for line in lines)
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    y = MARGIN
    for line in lines:
        draw.text((MARGIN, y), line.text, font=line.font, fill=line.color)
        y += line_height(line.font) + line.gap_after
        if line.rule_after:  # a thin rule between samples
            rule_y = y - SAMPLE_GAP // 2
            draw.line([(MARGIN, rule_y), (WIDTH - MARGIN, rule_y)], fill=RULE_COLOR, width=2)
    image.save(path, format="PNG")
    return image.size

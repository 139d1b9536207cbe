"""loss.png: the training and validation loss by step, drawn with Pillow alone (like
predictions.png: no plotting library, deterministic bytes for the same history).

The training loss is a line (one point per optimizer step); the validation loss, measured
before and after training, is dots joined by a dashed-looking thin line.
"""

from __future__ import annotations

import os

from PIL import Image, ImageDraw

from botfleet.artifacts import TrainingHistory
from botfleet_jobs.thumbnail import font

WIDTH, HEIGHT = 1200, 600
LEFT, RIGHT, TOP, BOTTOM = 110, 40, 80, 80  # margins around the plot area
TITLE_SIZE, LABEL_SIZE = 32, 20

BACKGROUND = (255, 255, 255)
AXIS_COLOR = (75, 85, 99)
GRID_COLOR = (226, 232, 240)
TEXT_COLOR = (17, 24, 39)
TRAIN_COLOR = (37, 99, 235)
VALID_COLOR = (234, 88, 12)


def scale(points: list[tuple[int, float]], steps: tuple[int, int], losses: tuple[float, float]):
    """Data points to pixels in the plot area (y grows downwards)."""
    (first, last), (low, high) = steps, losses
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_span, y_span = max(last - first, 1), (high - low) or 1.0
    return [(LEFT + (s - first) / x_span * width, TOP + (high - v) / y_span * height) for s, v in points]


def bounds(history: TrainingHistory) -> tuple[tuple[int, int], tuple[float, float]]:
    points = history.train_losses() + history.valid_losses()
    steps = [s for s, _ in points] or [0, 1]
    losses = [v for _, v in points] or [0.0, 1.0]
    low, high = min(losses), max(losses)
    pad = (high - low) * 0.05 or 0.5
    return (min(steps), max(steps)), (max(0.0, low - pad), high + pad)


def draw_axes(draw: ImageDraw.ImageDraw, steps: tuple[int, int], losses: tuple[float, float]) -> None:
    label = font(LABEL_SIZE)
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    for i in range(5):  # horizontal grid lines with their loss
        value = losses[0] + (losses[1] - losses[0]) * i / 4
        (_, y), *_ = scale([(steps[0], value)], steps, losses)
        draw.line([(LEFT, y), (right, y)], fill=GRID_COLOR, width=1)
        draw.text((LEFT - 12, y), f"{value:.3g}", font=label, fill=TEXT_COLOR, anchor="rm")
    draw.line([(LEFT, TOP), (LEFT, bottom), (right, bottom)], fill=AXIS_COLOR, width=2)
    draw.text((LEFT, bottom + 12), f"step {steps[0]}", font=label, fill=TEXT_COLOR, anchor="lt")
    draw.text((right, bottom + 12), f"step {steps[1]}", font=label, fill=TEXT_COLOR, anchor="rt")


def draw_legend(draw: ImageDraw.ImageDraw, train: bool, valid: bool) -> None:
    """A key for each loss the picture shows."""
    label = font(LABEL_SIZE)
    x, y = WIDTH - RIGHT - 360, TOP - 34
    if train:
        draw.line([(x, y), (x + 30, y)], fill=TRAIN_COLOR, width=4)
        draw.text((x + 40, y), "training loss", font=label, fill=TEXT_COLOR, anchor="lm")
    x += 190
    if valid:
        draw.ellipse([(x + 9, y - 6), (x + 21, y + 6)], fill=VALID_COLOR)
        draw.text((x + 40, y), "validation loss", font=label, fill=TEXT_COLOR, anchor="lm")


def render_loss_curve_png(history: TrainingHistory, title: str, path: str | os.PathLike) -> tuple[int, int]:
    """Draw ``history`` under ``title`` into a PNG at ``path``; returns the image size."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((LEFT, 24), title, font=font(TITLE_SIZE), fill=TEXT_COLOR)
    steps, losses = bounds(history)
    draw_axes(draw, steps, losses)
    train = scale(history.train_losses(), steps, losses)
    if len(train) > 1:
        draw.line(train, fill=TRAIN_COLOR, width=3, joint="curve")
    elif train:
        (x, y) = train[0]
        draw.ellipse([(x - 4, y - 4), (x + 4, y + 4)], fill=TRAIN_COLOR)
    valid = scale(history.valid_losses(), steps, losses)
    draw_legend(draw, bool(train), bool(valid))
    if len(valid) > 1:
        draw.line(valid, fill=VALID_COLOR, width=1)
    for x, y in valid:
        draw.ellipse([(x - 7, y - 7), (x + 7, y + 7)], fill=VALID_COLOR)
    image.save(path, format="PNG")
    return image.size

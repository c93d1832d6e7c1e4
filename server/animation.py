"""A head's attention over training as an animated GIF: one frame per snapshot step.

    gif_bytes = animation.attention_gif(views.head_over_training(session, run_id=7, layer=1, head=0, probe=5))

Each frame is the head's map on one probe sequence (query rows, key columns, as on the run page),
every cell a square of ``cell`` pixels, coloured by the page's own scale (``figures.ATTENTION_SCALE``,
white at 0 to dark blue at 1) sampled at ``LEVELS`` levels, with the cells above the diagonal (keys a
causal head cannot see) in grey. A band above the map names the head and the step in a 3 x 5 pixel
font drawn here ("L1H0 STEP 1,250"). The palette is fixed (the levels, the grey, the ink), so every
frame of every run reads the same; ``core.gif`` writes the file.
"""

from __future__ import annotations

import numpy as np

from core import gif
from server.figures import ATTENTION_SCALE
from server.views.runs import HeadOverTraining

LEVELS = 254  # palette indices 0..253: the colour scale
EMPTY, INK = 254, 255  # above the diagonal; the label's text
EMPTY_RGB, INK_RGB = (229, 231, 235), (29, 35, 48)
MAP_PIXELS = 288  # about this many pixels across the map, whatever the sequence length
SCALE = 2  # each font pixel is SCALE x SCALE
PAD = 4
SECONDS = 10  # the whole animation takes about this long, each frame 0.08 .. 0.5 s

FONT = {  # 3 x 5 glyphs, "#" inked
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    ",": ("...", "...", "...", ".#.", "#.."), " ": ("...",) * 5,
    "L": ("#..", "#..", "#..", "#..", "###"), "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."), "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "E": ("###", "#..", "##.", "#..", "###"), "P": ("##.", "#.#", "##.", "#..", "#.."),
}


def palette() -> list[tuple[int, int, int]]:
    """256 colours: ``LEVELS`` samples of the attention scale (index i is weight i / (LEVELS - 1)), grey, ink."""
    stops = [(at, tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))) for at, colour in ATTENTION_SCALE]
    colours = []
    for i in range(LEVELS):
        t = i / (LEVELS - 1)
        (a, lo), (b, hi) = next((stops[j], stops[j + 1]) for j in range(len(stops) - 1) if t <= stops[j + 1][0])
        f = (t - a) / (b - a) if b > a else 0.0
        colours.append(tuple(round(x + (y - x) * f) for x, y in zip(lo, hi)))
    return colours + [EMPTY_RGB, INK_RGB]


def levels(matrix: np.ndarray) -> np.ndarray:
    """A [W, W] map -> palette indices: the weight's level on and below the diagonal, EMPTY above it."""
    index = np.rint(np.clip(np.nan_to_num(matrix), 0.0, 1.0) * (LEVELS - 1)).astype(np.uint8)
    index[np.triu_indices(matrix.shape[0], k=1)] = EMPTY
    return index


def text_band(text: str, width: int) -> bytes:
    """A band ``width`` pixels wide holding ``text`` in the 3 x 5 font, on the scale's white (index 0)."""
    height = 5 * SCALE + 2 * PAD
    band = np.zeros((height, width), dtype=np.uint8)
    x = PAD
    for char in text:
        for row, line in enumerate(FONT[char]):
            for col, mark in enumerate(line):
                if mark == "#":
                    y0, x0 = PAD + row * SCALE, x + col * SCALE
                    band[y0:y0 + SCALE, x0:x0 + SCALE] = INK
        x += 4 * SCALE
    return band.tobytes()


def label(layer: int, head: int, step: int) -> str:
    return f"L{layer}H{head} STEP {step:,}"


def attention_gif(frames: HeadOverTraining) -> bytes:
    """The animated GIF of ``frames``: one frame per step, looping, about ``SECONDS`` long in all."""
    width = frames.maps[0].shape[0]
    cell = max(2, MAP_PIXELS // width)
    longest = max(len(label(frames.layer, frames.head, step)) for step in frames.steps)
    image_width = max(width * cell, 2 * PAD + 4 * SCALE * longest)
    pixels = []
    for step, matrix in zip(frames.steps, frames.maps):
        grid = np.repeat(np.repeat(levels(matrix), cell, axis=0), cell, axis=1)  # each cell a square
        body = np.full((grid.shape[0], image_width), EMPTY, dtype=np.uint8)
        body[:, :grid.shape[1]] = grid
        pixels.append(text_band(label(frames.layer, frames.head, step), image_width) + body.tobytes())
    height = len(pixels[0]) // image_width
    delay = min(50, max(8, round(100 * SECONDS / len(pixels))))
    return gif.encode(pixels, width=image_width, height=height, palette=palette(), delay_cs=delay)

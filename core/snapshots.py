"""Attention snapshots: every layer and head on the probe set at one training step, made compact.

A snapshot keeps, for each probe sequence of input length L, only the block of its real tokens
(positions 0..2L+1, the padding carries no circuit) and only the causal half of it (the lower
triangle, diagonal included), as float16, zlib-compressed. For the paper's model and a probe set of
4 sequences per length that is about 60 KB raw and less compressed, one database row per step.

Each position gets a text label (:func:`token_label`: "[parity]", "x1=0", "EoI", "y1=1"), the same on
the dashboard and in a notebook. Torch-free on purpose: the server unpacks snapshots to draw heatmaps.
"""

from __future__ import annotations

import zlib

import numpy as np

from core.problems import eoi_position, tokens

FORMAT = "tril-real-f16-zlib-v1"


def real_width(length: int) -> int:
    """Positions of a sequence of input length L that hold real tokens: [problem] x_1..x_L [EoI] y_1..y_L."""
    return 2 * length + 2


PROBLEM_TOKENS = {tokens.POLYNOMIAL: "[poly]", tokens.PARITY: "[parity]", tokens.BINARY_COPY: "[copy]",
                  tokens.BEGIN: "[begin]"}


def token_label(token: int, position: int, length: int) -> str:
    """Text for one position of a row of input length L: "[parity]", "x2=1", "EoI", "y2=0", "EoS"."""
    e = eoi_position(length)
    if token == tokens.EOI:
        return "EoI"
    if token == tokens.EOS:
        return "EoS"
    if token in PROBLEM_TOKENS:
        return PROBLEM_TOKENS[token]
    if 1 <= position < e:
        return f"x{position}={token}"
    if position > e:
        return f"y{position - e}={token}"
    return str(token)


def pack(patterns: np.ndarray, lengths: np.ndarray) -> tuple[bytes, dict]:
    """patterns [N, n_layers, n_heads, W, W] (rows sum to 1), lengths [N] -> (blob, layout)."""
    n, n_layers, n_heads, width, _ = patterns.shape
    pieces = []
    for i, length in enumerate(lengths.tolist()):
        w = real_width(length)
        rows, cols = np.tril_indices(w)
        pieces.append(patterns[i, :, :, rows, cols].astype(np.float16).reshape(-1))  # [w(w+1)/2 * layers*heads]
    blob = zlib.compress(np.concatenate(pieces).tobytes(), level=6)
    layout = {
        "format": FORMAT, "n_layers": n_layers, "n_heads": n_heads, "width": width,
        "lengths": [int(x) for x in lengths],
    }
    return blob, layout


def unpack(blob: bytes, layout: dict) -> np.ndarray:
    """The inverse of :func:`pack`: float32 [N, n_layers, n_heads, W, W], zero outside the real block."""
    if layout.get("format") != FORMAT:
        raise ValueError(f"unknown snapshot format {layout.get('format')!r}")
    n_layers, n_heads, width = layout["n_layers"], layout["n_heads"], layout["width"]
    lengths = layout["lengths"]
    flat = np.frombuffer(zlib.decompress(blob), dtype=np.float16)
    out = np.zeros((len(lengths), n_layers, n_heads, width, width), dtype=np.float32)
    offset = 0
    for i, length in enumerate(lengths):
        w = real_width(length)
        rows, cols = np.tril_indices(w)
        size = len(rows) * n_layers * n_heads
        # pack() indexed [layers, heads] with (rows, cols) fancy indices, which numpy puts first
        block = flat[offset:offset + size].reshape(len(rows), n_layers, n_heads)
        out[i, :, :, rows, cols] = block
        offset += size
    if offset != flat.size:
        raise ValueError("snapshot blob does not match its layout")
    return out

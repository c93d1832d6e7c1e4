"""core.gif writes GIF89a files that decode back to the frames, palette, delays and loop it was given.

Pillow is not a dependency of the project, so the file is read back by the small reader below: it
walks the blocks of the format and undoes the LZW the way a decoder must (one code behind the
encoder), so a disagreement about code widths shows as wrong pixels. The browser tests load the
server's GIF in Chromium as a second, independent decoder.
"""

from __future__ import annotations

import random
import struct

import pytest

from core import gif


def decode_lzw(data: bytes, min_size: int) -> list[int]:
    clear, end = 1 << min_size, (1 << min_size) + 1
    bits = int.from_bytes(data, "little")
    total, position = len(data) * 8, 0
    out: list[int] = []
    size, table, previous = min_size + 1, None, None
    while position + size <= total:
        code = (bits >> position) & ((1 << size) - 1)
        position += size
        if code == clear:
            table = [[i] for i in range(clear)] + [None, None]
            size, previous = min_size + 1, None
            continue
        if code == end:
            return out
        assert table is not None, "the stream must start with a clear code"
        if previous is None:
            entry = table[code]
        else:
            entry = table[code] if code < len(table) else previous + previous[:1]
            if len(table) < 4096:
                table.append(previous + entry[:1])
        out += entry
        previous = entry
        if len(table) == (1 << size) and size < 12:
            size += 1
    raise AssertionError("no end code")


def read_gif(data: bytes) -> dict:
    """The parts of a GIF89a file: size, global palette, loop count, and each frame's delay and pixels."""
    assert data[:6] == b"GIF89a"
    width, height, packed, _, _ = struct.unpack("<HHBBB", data[6:13])
    assert packed & 0x80, "a global colour table"
    n_colours = 2 ** ((packed & 7) + 1)
    palette = [tuple(data[13 + 3 * i:16 + 3 * i]) for i in range(n_colours)]
    i, frames, delays, loop = 13 + 3 * n_colours, [], [], None

    def blocks(at: int) -> tuple[bytes, int]:
        body = bytearray()
        while data[at]:
            body += data[at + 1:at + 1 + data[at]]
            at += 1 + data[at]
        return bytes(body), at + 1

    while True:
        kind = data[i]
        if kind == 0x3B:
            assert i == len(data) - 1, "nothing after the trailer"
            break
        if kind == 0x21:
            label = data[i + 1]
            body, i = blocks(i + 2)
            if label == 0xFF:
                assert body[:11] == b"NETSCAPE2.0"
                loop = struct.unpack("<H", body[12:14])[0]
            elif label == 0xF9:
                delays.append(struct.unpack("<H", body[1:3])[0])
            continue
        assert kind == 0x2C, f"unexpected block 0x{kind:02x} at {i}"
        x, y, w, h, flags = struct.unpack("<HHHHB", data[i + 1:i + 10])
        assert (x, y, w, h, flags) == (0, 0, width, height, 0)
        min_size = data[i + 10]  # the LZW minimum code size, just before the sub-blocks
        body, i = blocks(i + 11)
        frames.append(decode_lzw(body, min_size))
    return {"width": width, "height": height, "palette": palette, "loop": loop, "delays": delays, "frames": frames}


PALETTE = [(v, 255 - v, (v * 7) % 256) for v in range(256)]


def test_frames_palette_delay_and_loop_come_back():
    width, height = 7, 5
    frames = [bytes((x * y + k) % 256 for y in range(height) for x in range(width)) for k in range(4)]
    decoded = read_gif(gif.encode(frames, width=width, height=height, palette=PALETTE, delay_cs=30))
    assert (decoded["width"], decoded["height"]) == (width, height)
    assert decoded["palette"] == PALETTE
    assert decoded["loop"] == 0 and decoded["delays"] == [30] * 4
    assert [bytes(f) for f in decoded["frames"]] == frames


@pytest.mark.parametrize("n", [1, 2, 3, *range(250, 262), 509, 510, 511, 512, 513, 1000, 3838, 3839, 3840])
def test_random_pixels_of_every_awkward_length_round_trip(n):
    """Random pixels add a code per pixel, so these lengths put the end code at each width change."""
    pixels = bytes(random.Random(n).randrange(256) for _ in range(n))
    assert bytes(read_gif(gif.encode([pixels], width=n, height=1, palette=PALETTE))["frames"][0]) == pixels


def test_a_full_code_table_starts_again_with_a_clear_code():
    pixels = bytes(random.Random(0).randrange(256) for _ in range(20_000))  # about five tables' worth
    assert bytes(read_gif(gif.encode([pixels], width=200, height=100, palette=PALETTE))["frames"][0]) == pixels


def test_flat_frames_compress_well():
    data = gif.encode([bytes(300 * 300)] * 3, width=300, height=300, palette=PALETTE)
    assert len(data) < 3 * 2_000  # 90,000 equal pixels are a few hundred codes
    assert read_gif(data)["frames"][2] == [0] * 90_000


def test_a_short_palette_is_padded_to_256_colours():
    decoded = read_gif(gif.encode([b"\x00\x01"], width=2, height=1, palette=[(1, 2, 3), (4, 5, 6)]))
    assert decoded["palette"][:2] == [(1, 2, 3), (4, 5, 6)] and len(decoded["palette"]) == 256


@pytest.mark.parametrize("frames, width, height, palette, message", [
    ([], 2, 1, PALETTE, "at least one frame"),
    ([b"\x00"], 2, 1, PALETTE, "frame 0 has 1 pixels"),
    ([b""], 0, 1, PALETTE, "width and height"),
    ([b"\x00"], 1, 1, [], "palette"),
])
def test_bad_input_says_what_is_wrong(frames, width, height, palette, message):
    with pytest.raises(ValueError, match=message):
        gif.encode(frames, width=width, height=height, palette=palette)

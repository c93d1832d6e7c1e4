"""A small animated-GIF encoder (GIF89a), in pure Python: frames of palette indices in, file bytes out.

    palette = [(v, v, v) for v in range(256)]              # 256 colours, index -> (r, g, b)
    frames = [bytes([i % 256] * (w * h)) for i in range(3)]  # each frame: w * h indices, row by row
    data = encode(frames, width=w, height=h, palette=palette, delay_cs=50)   # 0.5 s a frame, looping

**The file.** A GIF is a header (``GIF89a``), a *logical screen* (width, height, and a flag saying a
global colour table follows), that table (3 bytes per colour, a power of two of them: here always 256,
shorter palettes padded with black), then blocks: here a *NETSCAPE2.0* application extension (the de
facto way to say "loop", 0 meaning for ever), and per frame a *graphic control extension* (its delay
in hundredths of a second) and an *image*: a descriptor (position, size) and its pixels, LZW-compressed
and cut into sub-blocks of at most 255 bytes, ended by an empty one. A ``;`` byte ends the file.
Numbers are little-endian 16-bit.

**LZW**, as GIF uses it: the code table starts with one code per palette index (0..255), then two
special codes, *clear* (256: start the table afresh) and *end* (257). The encoder reads pixels,
growing the longest run ``w`` that is already in the table; when ``w`` plus the next pixel is not, it
writes ``w``'s code and gives ``w + pixel`` the next free code. Codes are written least-significant
bit first, 9 bits wide at the start; the width grows by one each time the next free code no longer
fits (up to 12 bits, 4,096 codes), and when the table is full the encoder writes *clear* and starts
again. The decoder rebuilds the same table from the codes alone, one code behind the encoder, which
is why the width grows when the free code *passes* a power of two rather than when it reaches one.

A table entry is keyed by ``(prefix code << 8) | pixel``, an int, so extending a run is one dict look-up
per pixel. Torch- and numpy-free: ``server.animation`` draws the frames of attention maps with it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

MIN_CODE_SIZE = 8  # 256 palette indices: literal codes 0..255
CLEAR, END = 256, 257
MAX_CODES = 4096  # codes are at most 12 bits


def encode(frames: Sequence[bytes], *, width: int, height: int, palette: Sequence[tuple[int, int, int]],
           delay_cs: int = 50, loop: int = 0) -> bytes:
    """An animated GIF of ``frames`` (each ``width * height`` palette indices, row by row), shown
    ``delay_cs`` hundredths of a second each, looping ``loop`` times (0: for ever)."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    if not (1 <= width <= 65535 and 1 <= height <= 65535):
        raise ValueError(f"width and height are 1..65535 (got {width} x {height})")
    if not 1 <= len(palette) <= 256:
        raise ValueError(f"a palette has 1..256 colours (got {len(palette)})")
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", width, height, 0b1111_0111, 0, 0)  # global table of 2**(7+1) colours
    for r, g, b in list(palette) + [(0, 0, 0)] * (256 - len(palette)):
        out += bytes((r, g, b))
    out += b"\x21\xff\x0bNETSCAPE2.0" + struct.pack("<BBHB", 3, 1, loop, 0)
    for i, frame in enumerate(frames):
        if len(frame) != width * height:
            raise ValueError(f"frame {i} has {len(frame)} pixels, not {width} x {height} = {width * height}")
        out += b"\x21\xf9\x04" + struct.pack("<BHBB", 0b0000_0100, delay_cs, 0, 0)  # disposal: keep, no transparency
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)  # at (0, 0), no local table
        out.append(MIN_CODE_SIZE)
        out += sub_blocks(lzw(frame))
    out.append(0x3B)
    return bytes(out)


def lzw(pixels: bytes) -> bytes:
    """GIF's variable-width LZW of palette indices (0..255), codes packed least-significant bit first."""
    out = bytearray()
    buffer = bits = 0  # pending bits, lowest first, and how many

    def write(code: int, size: int) -> None:
        nonlocal buffer, bits
        buffer |= code << bits
        bits += size
        while bits >= 8:
            out.append(buffer & 0xFF)
            buffer >>= 8
            bits -= 8

    size, table, free = MIN_CODE_SIZE + 1, {}, END + 1
    write(CLEAR, size)
    w = pixels[0] if pixels else None
    for pixel in pixels[1:]:
        key = (w << 8) | pixel
        code = table.get(key)
        if code is not None:
            w = code
            continue
        write(w, size)
        if free < MAX_CODES:
            table[key] = free
            free += 1
            if free > (1 << size) and size < 12:
                size += 1
        else:  # the table is full: start a new one
            write(CLEAR, size)
            size, table, free = MIN_CODE_SIZE + 1, {}, END + 1
        w = pixel
    if w is not None:
        write(w, size)
        if free == (1 << size) and size < 12:  # the decoder, adding w's entry, widens before END
            size += 1
    write(END, size)
    if bits:
        out.append(buffer & 0xFF)
    return bytes(out)


def sub_blocks(data: bytes) -> bytes:
    """Data cut into blocks of a length byte and at most 255 bytes, ended by an empty block."""
    out = bytearray()
    for start in range(0, len(data), 255):
        chunk = data[start:start + 255]
        out.append(len(chunk))
        out += chunk
    out.append(0)
    return bytes(out)

"""One gzip stream from parts compressed ahead of time and a few bytes that differ per answer.

    parts = GzipParts([b"<html>...<meta content=\"", b"\">...</html>"])   # compressed once, when cached
    body = parts.join(b"the reader's CSRF token")                          # per answer: a few microseconds

``server.cache`` keeps a finished run's page with a hole where each reader's CSRF token goes.
Compressing the whole page again for every reader would cost most of what the cache saves, so each
part is compressed once into raw deflate blocks ended by a sync flush (byte-aligned, not final).
Deflate blocks may simply follow one another, so an answer is the gzip header, the parts' blocks
with the (tiny) token stored uncompressed between them, an empty final block, and the CRC-32 and length of the
whole body (the CRC over the parts is combined at once; zlib's ``crc32`` of a 130 KB page takes
well under a millisecond). The result is one ordinary gzip member that every client reads.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

LEVEL = 6  # compressed once per cached body, so a good ratio is affordable
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip magic, deflate, no flags, mtime 0, unknown OS
FINAL_EMPTY_BLOCK = b"\x03\x00"  # BFINAL=1, fixed Huffman, end-of-block


def deflate_blocks(data: bytes, level: int = LEVEL) -> bytes:
    """``data`` as raw deflate blocks ending on a byte boundary, none of them final."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def stored_blocks(data: bytes) -> bytes:
    """``data`` as stored (uncompressed) deflate blocks: no compressor to set up, for a few bytes per answer."""
    out = []
    for start in range(0, len(data), 0xFFFF):
        chunk = data[start:start + 0xFFFF]
        out.append(b"\x00" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk)  # BFINAL=0, BTYPE=00
    return b"".join(out)


class GzipParts:
    """Parts of a body, compressed once; :meth:`join` gzips ``parts[0] + filler + parts[1] + ...``."""

    def __init__(self, parts: Sequence[bytes]) -> None:
        self.parts = list(parts)
        self.blocks = [deflate_blocks(part) for part in self.parts]
        self.size = sum(len(block) for block in self.blocks)

    def join(self, filler: bytes = b"") -> bytes:
        filler_blocks = stored_blocks(filler) if filler and len(self.parts) > 1 else b""
        crc, out = 0, [HEADER]
        for index, (part, block) in enumerate(zip(self.parts, self.blocks)):
            if index:
                crc = zlib.crc32(filler, crc)
                out.append(filler_blocks)
            crc = zlib.crc32(part, crc)
            out.append(block)
        length = sum(map(len, self.parts)) + len(filler) * (len(self.parts) - 1)
        out += [FINAL_EMPTY_BLOCK, struct.pack("<II", crc, length & 0xFFFFFFFF)]
        return b"".join(out)

"""A gzip stream spliced from parts compressed ahead of time reads back as the whole body."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from server.gzip_parts import GzipParts


@pytest.mark.parametrize("parts", [[b"only one part"], [b"", b""], [b"<meta content=\"", b"\">" + b"x" * 70_000],
                                   [os.urandom(3000), b"abc" * 5000, b"", b"tail"]])
@pytest.mark.parametrize("filler", [b"", b"a-csrf-token-3f9a"])
def test_the_spliced_stream_is_the_joined_body(parts, filler):
    stream = GzipParts(parts).join(filler)
    assert gzip.decompress(stream) == filler.join(parts)
    assert zlib.decompress(stream, wbits=31) == filler.join(parts)  # what a browser's inflate does


def test_parts_are_compressed_once_and_the_answer_stays_small():
    page = GzipParts([b"<html>" + b"<td>0.125</td>" * 10_000, b"</html>"])
    assert len(page.join(b"token")) < 2_000

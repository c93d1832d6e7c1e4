"""Arrays as bytes for BLOB columns: zlib-compressed raw little-endian values.

The bytes carry no header: dtype and shape travel beside them (a snapshot's `shape` and
`layout` columns, the probe set's fixed dtypes), so `unpack` is told both.

    data = pack(patterns.astype(np.float16))          # patterns [L, H, N, T, T]
    patterns = unpack(data, np.float16, (L, H, N, T, T))
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

COMPRESSION_LEVEL = 6


def pack(array: np.ndarray) -> bytes:
    """Compress the array's values (C order, little-endian) into bytes."""
    array = np.asarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
    return zlib.compress(little.tobytes(order="C"), COMPRESSION_LEVEL)


def unpack(data: bytes, dtype: DTypeLike, shape: Sequence[int]) -> np.ndarray:
    """Inverse of `pack`: a new writable array of `dtype` and `shape`.

    Raises ValueError when the bytes do not hold exactly that many values.
    """
    little = np.dtype(dtype).newbyteorder("<")
    raw = zlib.decompress(data)
    expected = int(np.prod(shape, dtype=np.int64)) * little.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"packed data holds {len(raw)} bytes, but {np.dtype(dtype)} {tuple(shape)} needs {expected}"
        )
    values = np.frombuffer(raw, dtype=little).reshape(shape)
    return values.astype(np.dtype(dtype).newbyteorder("="), copy=True)

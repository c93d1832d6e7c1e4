"""pack/unpack: arrays to compressed bytes and back, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from core.db.arrays import pack, unpack


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8, np.int16, np.int64])
def test_round_trip_is_exact(dtype):
    array = (np.random.default_rng(0).random((3, 4, 5)) * 100).astype(dtype)
    back = unpack(pack(array), dtype, array.shape)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_non_contiguous_and_big_endian_inputs():
    array = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(unpack(pack(array.T), np.float32, (6, 4)), array.T)
    big = array.astype(">f4")
    assert pack(big) == pack(array)


def test_empty_array():
    empty = np.zeros((0, 7), dtype=np.float16)
    assert unpack(pack(empty), np.float16, (0, 7)).shape == (0, 7)


def test_compresses_repetitive_data():
    assert len(pack(np.zeros(10_000, dtype=np.float16))) < 200


def test_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="needs"):
        unpack(pack(np.zeros(6, dtype=np.float16)), np.float16, (2, 4))

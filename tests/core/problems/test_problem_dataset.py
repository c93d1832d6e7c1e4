"""Datasets: the token layout, split sizes and order, seeds, mixtures, held-out lengths, probes."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from core.problems import PROBLEMS, build_dataset, encode, get_problem, tokens, width_for

TOKEN_TO_PROBLEM = {p.token: p for p in PROBLEMS.values()}


def spec(**overrides):
    """A small ProblemSpec stand-in with the contract's keys."""
    values = dict(
        problem="polynomial", min_len=1, max_len=6, test_max_len=None, n_train_per_len=40,
        n_test_per_len=30, data_mix=0.5, data_seed=0, probe_per_len=4,
    )
    return SimpleNamespace(**(values | overrides))


def assert_rows_are_valid(row_tokens, lengths, width):
    """Every row follows its problem token's iteration, in the layout, padded with EOS."""
    assert row_tokens.shape == (len(lengths), width) and row_tokens.dtype == np.uint8
    for row, L in zip(row_tokens, lengths):
        problem = TOKEN_TO_PROBLEM[int(row[0])]
        x, y = row[1 : L + 1], row[L + 2 : 2 * L + 2]
        assert row[L + 1] == tokens.EOI
        assert np.all(row[2 * L + 2 :] == tokens.EOS) and width - (2 * L + 2) >= 1
        assert set(x.tolist()) <= set(problem.inputs)
        assert np.array_equal(problem.iterate(x[None, :])[0], y)


def test_encode_paper_example_layout():
    x, y = np.array([[9, 9, 10, 8]]), np.array([[9, 5, 7, 2]])
    row = encode(tokens.POLYNOMIAL, x, y, 13)
    assert row.dtype == np.uint8
    assert row.tolist() == [[58, 9, 9, 10, 8, 62, 9, 5, 7, 2, 63, 63, 63]]


def test_encode_parity_and_copy_examples():
    x = np.array([[1, 0, 1]])
    parity = encode(tokens.PARITY, x, get_problem("parity").iterate(x), 9)
    copy = encode(tokens.BINARY_COPY, x, get_problem("binary_copy").iterate(x), 9)
    assert parity.tolist() == [[59, 1, 0, 1, 62, 1, 1, 0, 63]]
    assert copy.tolist() == [[60, 1, 0, 1, 62, 1, 0, 1, 63]]


def test_encode_accepts_one_token_per_row():
    x = np.zeros((2, 1), dtype=np.uint8)
    rows = encode(np.array([59, 60]), x, x, 5)
    assert rows[:, 0].tolist() == [59, 60]


def test_encode_needs_room_for_one_eos():
    x = np.ones((1, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="EOS"):
        encode(tokens.PARITY, x, x, 8)


def test_width():
    assert width_for(16) == 35
    assert width_for(16, 20) == 43
    assert build_dataset(spec(max_len=6)).width == 15
    assert build_dataset(spec(max_len=6, test_max_len=9)).width == 21


def test_sizes_per_length_and_sorted_order():
    data = build_dataset(spec(min_len=2, max_len=6))
    for name, per_len in (("train", 40), ("test", 30), ("probe", 4)):
        row_tokens, lengths = data.split(name)
        assert lengths.dtype == np.int16
        assert np.all(np.diff(lengths) >= 0)
        assert data.lengths(name).tolist() == [2, 3, 4, 5, 6]
        assert np.bincount(lengths)[2:].tolist() == [per_len] * 5
        rows = data.rows(name, 4)
        assert np.all(lengths[rows] == 4) and len(row_tokens[rows]) == per_len
        assert_rows_are_valid(row_tokens, lengths, data.width)


def test_paper_defaults_build_quickly_and_small():
    paper = spec(max_len=16, n_train_per_len=1024, n_test_per_len=1024)
    start = time.perf_counter()
    data = build_dataset(paper)
    assert time.perf_counter() - start < 0.5
    assert data.train_tokens.shape == (16 * 1024, 35) == data.test_tokens.shape
    assert data.train_tokens.nbytes + data.test_tokens.nbytes < 2_000_000


def test_rows_within_a_length_are_shuffled_not_grouped():
    data = build_dataset(spec(problem="parity+binary_copy", max_len=8, n_train_per_len=200))
    first_tokens = data.train_tokens[data.rows("train", 8), 0]
    # grouped would be 100 parity rows then 100 copy rows: exactly one change of token
    assert np.count_nonzero(np.diff(first_tokens.astype(int))) > 10


def test_same_seed_same_data():
    a, b = build_dataset(spec(data_seed=7)), build_dataset(spec(data_seed=7))
    for name in ("train", "test", "probe"):
        assert np.array_equal(a.split(name)[0], b.split(name)[0])


def test_different_seed_different_data():
    a, b = build_dataset(spec(data_seed=0)), build_dataset(spec(data_seed=1))
    for name in ("train", "test", "probe"):
        assert not np.array_equal(a.split(name)[0], b.split(name)[0])


def test_probe_set_is_independent_of_the_split_sizes_and_max_len():
    small = build_dataset(spec(max_len=4, n_train_per_len=10))
    large = build_dataset(spec(max_len=6, n_train_per_len=50))
    rows = large.rows("probe", 4)
    assert np.array_equal(small.probe_tokens[:, :11], large.probe_tokens[: rows.stop, :11])


def test_probe_rows_differ_from_the_data_stream():
    data = build_dataset(spec(max_len=8))
    train_rows = {r.tobytes() for r in data.train_tokens[data.rows("train", 8)]}
    probe_rows = data.probe_tokens[data.rows("probe", 8)]
    assert not any(r.tobytes() in train_rows for r in probe_rows)  # 10^8 possible inputs


def test_train_and_test_overlap_only_by_chance_at_long_lengths():
    data = build_dataset(spec(max_len=8, n_train_per_len=100, n_test_per_len=100))
    train_rows = {r.tobytes() for r in data.train_tokens[data.rows("train", 8)]}
    test_rows = [r.tobytes() for r in data.test_tokens[data.rows("test", 8)]]
    assert not any(r in train_rows for r in test_rows)
    assert len(set(test_rows)) == 100


@pytest.mark.parametrize(
    ("mix", "n_first_train", "n_first_test"),
    [(0.5, 20, 15), (0.25, 10, 8), (1.0, 40, 30), (0.0, 0, 0)],
)
def test_mixture_fractions_per_length_and_split(mix, n_first_train, n_first_test):
    data = build_dataset(spec(problem="parity+polynomial", data_mix=mix))
    for L in range(1, 7):
        train_first = data.train_tokens[data.rows("train", L), 0]
        test_first = data.test_tokens[data.rows("test", L), 0]
        assert np.count_nonzero(train_first == tokens.PARITY) == n_first_train
        assert np.count_nonzero(train_first == tokens.POLYNOMIAL) == 40 - n_first_train
        assert np.count_nonzero(test_first == tokens.PARITY) == n_first_test  # 7.5 rounds up to 8
        assert np.count_nonzero(test_first == tokens.POLYNOMIAL) == 30 - n_first_test


def test_mixture_counts_round_half_up():
    mixed = spec(problem="parity+polynomial", data_mix=0.5, n_train_per_len=5, n_test_per_len=9)
    data = build_dataset(mixed)
    train_first = data.train_tokens[data.rows("train", 3), 0]
    test_first = data.test_tokens[data.rows("test", 3), 0]
    assert np.count_nonzero(train_first == tokens.PARITY) == 3  # 2.5 (Python's round gives 2)
    assert np.count_nonzero(test_first == tokens.PARITY) == 5  # 4.5


def test_mixture_rows_follow_their_first_token():
    data = build_dataset(spec(problem="binary_copy+parity", max_len=5, test_max_len=7))
    for name in ("train", "test", "probe"):
        assert set(data.split(name)[0][:, 0].tolist()) == {tokens.BINARY_COPY, tokens.PARITY}
        assert_rows_are_valid(*data.split(name), data.width)


def test_data_mix_is_ignored_for_a_single_problem():
    a = build_dataset(spec(data_mix=0.5))
    b = build_dataset(spec(data_mix=0.0))
    assert np.array_equal(a.train_tokens, b.train_tokens)
    assert set(a.train_tokens[:, 0].tolist()) == {tokens.POLYNOMIAL}


def test_held_out_lengths_only_in_test():
    data = build_dataset(spec(min_len=3, max_len=5, test_max_len=8))
    assert data.lengths("train").tolist() == [3, 4, 5]
    assert data.lengths("test").tolist() == [3, 4, 5, 6, 7, 8]
    assert data.lengths("probe").tolist() == [3, 4, 5, 6, 7, 8]
    assert np.bincount(data.test_lengths)[6:].tolist() == [30, 30, 30]
    assert data.width == 2 * 8 + 3
    assert_rows_are_valid(data.test_tokens, data.test_lengths, data.width)


def test_held_out_lengths_leave_train_data_unchanged():
    plain = build_dataset(spec(max_len=5))
    extended = build_dataset(spec(max_len=5, test_max_len=8))
    assert np.array_equal(plain.train_tokens, extended.train_tokens[:, : plain.width])


@pytest.mark.parametrize(
    "overrides",
    [
        dict(min_len=0),
        dict(min_len=5, max_len=4),
        dict(test_max_len=3),
        dict(problem="parity+polynomial", data_mix=1.5),
    ],
)
def test_bad_specs_raise(overrides):
    with pytest.raises(ValueError):
        build_dataset(spec(**overrides))


def test_unknown_problem_raises_listing_known_names():
    with pytest.raises(ValueError, match="binary_copy"):
        build_dataset(spec(problem="copy"))


def test_dataset_is_frozen():
    data = build_dataset(spec())
    with pytest.raises(AttributeError):
        data.width = 3
    with pytest.raises(ValueError, match="probe"):
        data.split("validation")

"""The theory's positions by hand (L = 3, e = 4) and the supervised target masks."""

import numpy as np
import pytest

from core.problems import (
    EXPECTED_LAYER,
    ROLES,
    eoi_position,
    expected_keys,
    expected_mask,
    supervised_mask,
)


def test_roles_and_their_layers():
    assert ROLES == ("eoi_locator", "iteration")
    assert EXPECTED_LAYER == {"eoi_locator": 0, "iteration": 1}


def test_eoi_position():
    assert [eoi_position(L) for L in (1, 3, 16)] == [2, 4, 17]


def test_eoi_locator_for_length_3():
    # row: 0 [P], 1 x1, 2 x2, 3 x3, 4 EoI, 5 y1, 6 y2, 7 y3
    queries, keys = expected_keys("eoi_locator", 3)
    assert queries.tolist() == [5, 6, 7]
    assert keys.tolist() == [4, 4, 4]


def test_iteration_for_length_3():
    # EoI predicts y1 from x1; y1 predicts y2 from x2; y2 predicts y3 from x3
    queries, keys = expected_keys("iteration", 3)
    assert queries.tolist() == [4, 5, 6]
    assert keys.tolist() == [1, 2, 3]


def test_keys_are_causal_and_length_long():
    for role in ROLES:
        for L in range(1, 20):
            queries, keys = expected_keys(role, L)
            assert len(queries) == len(keys) == L
            assert np.all(keys < queries)


def test_unknown_role_raises():
    with pytest.raises(ValueError, match="eoi_locator"):
        expected_keys("induction", 3)


def test_expected_mask_marks_exactly_the_expected_cells():
    mask = expected_mask("iteration", 3, 9)
    assert mask.shape == (9, 9) and mask.dtype == bool
    assert sorted(zip(*np.nonzero(mask))) == [(4, 1), (5, 2), (6, 3)]
    assert expected_mask("eoi_locator", 3, 9)[:, 4].sum() == 3


def test_expected_mask_rejects_a_too_narrow_width():
    with pytest.raises(ValueError):
        expected_mask("eoi_locator", 3, 7)


def test_supervised_mask_all_takes_everything_after_eoi():
    # width 9 (L_max = 3): targets j = 0..7 predict tokens 1..8
    mask = supervised_mask(np.array([3, 1]), 9, "all")
    assert mask.shape == (2, 8)
    # L=3: tokens y1 y2 y3 EOS at 5..8 -> targets 4..7
    assert np.nonzero(mask[0])[0].tolist() == [4, 5, 6, 7]
    # L=1: [P] x1 EoI y1 EOS.. -> y1 at 3, targets 2..7 (y1 and five EOS)
    assert np.nonzero(mask[1])[0].tolist() == [2, 3, 4, 5, 6, 7]


def test_supervised_mask_cot_stops_after_the_first_eos():
    mask = supervised_mask(np.array([3, 1]), 9, "cot")
    assert np.nonzero(mask[0])[0].tolist() == [4, 5, 6, 7]
    assert np.nonzero(mask[1])[0].tolist() == [2, 3]  # y1 and the EOS after it


def test_supervised_mask_counts():
    lengths = np.arange(1, 17)
    width = 35
    assert supervised_mask(lengths, width, "cot").sum(axis=1).tolist() == (lengths + 1).tolist()
    all_counts = supervised_mask(lengths, width, "all").sum(axis=1)
    assert all_counts.tolist() == (width - 2 - lengths).tolist()


def test_supervised_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="cot"):
        supervised_mask(np.array([2]), 9, "everything")
    with pytest.raises(ValueError):
        supervised_mask(np.array([4]), 9, "all")  # 2*4+3 = 11 > 9

"""Head scores on hand-built attention patterns (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from core.ml.metrics import SCORES, THRESHOLD, HeadScores, ideal_pattern, score_patterns
from core.problems import ROLES, expected_keys

MAX_LEN = 6
WIDTH = 2 * MAX_LEN + 3
LENGTHS = np.repeat(np.arange(1, MAX_LEN + 1), 3)  # 3 sequences per length


def uniform_causal(width: int) -> np.ndarray:
    """[W, W]: each query spreads its weight evenly over itself and every earlier key."""
    tril = np.tril(np.ones((width, width)))
    return tril / tril.sum(axis=1, keepdims=True)


def stack(per_row) -> np.ndarray:
    """patterns [N, n_layers=2, n_heads=2, W, W] from per_row(i, length, layer, head) -> [W, W]."""
    return np.stack([
        np.stack([np.stack([per_row(i, int(length), layer, head) for head in range(2)]) for layer in range(2)])
        for i, length in enumerate(LENGTHS)
    ])


@pytest.mark.parametrize("role", ROLES)
def test_the_ideal_pattern_scores_one_on_its_head_and_low_elsewhere(role):
    layer = {"eoi_locator": 0, "iteration": 1}[role]
    other_role = next(r for r in ROLES if r != role)

    def row(i, length, lay, head):
        if (lay, head) == (layer, 0):
            return ideal_pattern(role, length, WIDTH)
        return uniform_causal(WIDTH)

    scores = score_patterns(stack(row), LENGTHS)
    assert scores.lengths == list(range(1, MAX_LEN + 1))
    for score in ("peaky_abs", "peaky_thres", "inv"):
        per_length = scores.scores[role][score]  # [2, 2, n_lengths]
        np.testing.assert_allclose(per_length[layer, 0], 1.0)
        assert scores.averaged(role, score, MAX_LEN)[layer, 0] == pytest.approx(1.0)
    for lay, head in [(0, 1), (1, 1), (1 - layer, 0)]:
        assert scores.averaged(role, "peaky_abs", MAX_LEN)[lay, head] < 0.3
        assert scores.averaged(role, "peaky_thres", MAX_LEN)[lay, head] == 0.0
    # the ideal map of one role is not the other role's map
    assert scores.averaged(other_role, "peaky_thres", MAX_LEN)[layer, 0] < 0.5
    # mul: all L expected cells carry weight 1, out of 2L+2 real rows of mass 1 each
    expected_mul = [length / (2 * length + 2) for length in range(1, MAX_LEN + 1)]
    np.testing.assert_allclose(scores.scores[role]["mul"][layer, 0], expected_mul)


def test_ideal_pattern_rows_are_distributions_on_the_expected_keys():
    for role in ROLES:
        pattern = ideal_pattern(role, 4, WIDTH)
        np.testing.assert_allclose(pattern.sum(axis=1), 1.0)
        queries, keys = expected_keys(role, 4)
        assert np.all(pattern[queries, keys] == 1.0)
        assert np.all(np.triu(pattern, 1) == 0)  # causal


def test_uniform_causal_attention_scores_the_mean_of_one_over_query_position_plus_one():
    scores = score_patterns(stack(lambda i, length, lay, head: uniform_causal(WIDTH)), LENGTHS)
    for role in ROLES:
        by_hand = []
        for length in range(1, MAX_LEN + 1):
            queries, _ = expected_keys(role, length)
            by_hand.append(np.mean([1.0 / (q + 1) for q in queries]))
        np.testing.assert_allclose(scores.scores[role]["peaky_abs"][1, 1], by_hand)
        np.testing.assert_allclose(scores.averaged(role, "peaky_abs", MAX_LEN), np.mean(by_hand[3:]))
        # every weight is <= 1/2 (the query at position 1 is the largest: 1/2, not above)
        assert np.all(scores.scores[role]["peaky_thres"] == 0.0)
        # identical sequences: no spread across them
        np.testing.assert_allclose(scores.scores[role]["inv"], 1.0)


@pytest.mark.parametrize("on_key,expected_thres", [(0.6, 1.0), (0.4, 0.0), (THRESHOLD, 0.0), (0.51, 1.0)])
def test_threshold_on_the_expected_key(on_key, expected_thres):
    role = "iteration"

    def row(i, length, lay, head):
        pattern = np.eye(WIDTH)
        queries, keys = expected_keys(role, length)
        for q, k in zip(queries, keys):
            pattern[q] = 0.0
            pattern[q, k] = on_key
            pattern[q, 0 if k != 0 else q] += 1 - on_key  # the rest on another causal key
        return pattern

    scores = score_patterns(stack(row), LENGTHS)
    np.testing.assert_allclose(scores.scores[role]["peaky_abs"], on_key)
    np.testing.assert_allclose(scores.scores[role]["peaky_thres"], expected_thres)


def test_inv_is_one_minus_the_mean_std_across_sequences():
    """Expected-key weights 0.2 and 0.8 alternating across 2 sequences per length -> std (ddof=1) 0.4243."""
    lengths = np.array([5, 5])
    role = "eoi_locator"

    def pattern(weight):
        p = uniform_causal(WIDTH)
        queries, keys = expected_keys(role, 5)
        for q, k in zip(queries, keys):
            p[q] = 0.0
            p[q, k] = weight
            p[q, q] += 1 - weight
        return p

    patterns = np.stack([pattern(0.2), pattern(0.8)])[:, None, None]  # [2, 1, 1, W, W]
    scores = score_patterns(patterns, lengths)
    std = np.std([0.2, 0.8], ddof=1)
    assert scores.scores[role]["inv"][0, 0, 0] == pytest.approx(1 - std)
    assert scores.scores[role]["peaky_abs"][0, 0, 0] == pytest.approx(0.5)
    assert scores.scores[role]["peaky_thres"][0, 0, 0] == pytest.approx(0.5)


def test_averaged_uses_lengths_four_to_max_len():
    lengths = [1, 2, 3, 4, 5, 6]
    values = np.array(lengths, dtype=float).reshape(1, 1, -1)  # score == length
    scores = HeadScores(lengths=lengths, scores={r: {s: values for s in SCORES} for r in ROLES})
    assert scores.averaged("iteration", "peaky_thres", 6)[0, 0] == pytest.approx(5.0)  # mean(4, 5, 6)
    assert scores.averaged("iteration", "peaky_thres", 5)[0, 0] == pytest.approx(4.5)  # mean(4, 5)
    assert scores.averaged("iteration", "peaky_thres", 4)[0, 0] == pytest.approx(4.0)
    # no length >= 4 in range: every length up to max_len
    assert scores.averaged("iteration", "peaky_thres", 3)[0, 0] == pytest.approx(2.0)
    short = HeadScores(lengths=[1, 2], scores={r: {s: values[..., :2] for s in SCORES} for r in ROLES})
    assert short.averaged("eoi_locator", "inv", 2)[0, 0] == pytest.approx(1.5)

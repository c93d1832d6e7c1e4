"""Problems by hand: worked sequences, input ranges, and the registry's names and errors."""

import numpy as np
import pytest

from core.problems import PROBLEMS, Mixture, Problem, ProblemError, get_problem, tokens


def test_token_ids_match_the_paper_vocabulary():
    markers = [tokens.POLYNOMIAL, tokens.PARITY, tokens.BINARY_COPY, tokens.BEGIN]
    ids = markers + [tokens.EOI, tokens.EOS]
    assert ids == [58, 59, 60, 61, 62, 63]
    assert tokens.PAD == tokens.EOS
    assert max(ids) < tokens.VOCAB_SIZE == 64


def test_polynomial_paper_example():
    x = np.array([[9, 9, 10, 8]])
    assert get_problem("polynomial").iterate(x).tolist() == [[9, 5, 7, 2]]


def test_polynomial_iterates_each_row_independently():
    x = np.array([[1, 1, 1], [10, 10, 10], [3, 4, 2]])
    # row 0: 1, 1*1+1=2, 2*1+1=3; row 1: 10, 101%11=2, 21%11=10; row 2: 3, 13%11=2, 5
    assert get_problem("polynomial").iterate(x).tolist() == [[1, 2, 3], [10, 2, 10], [3, 2, 5]]


def test_parity_is_the_running_sum_mod_2():
    x = np.array([[1, 0, 1, 1], [0, 0, 0, 1]])
    assert get_problem("parity").iterate(x).tolist() == [[1, 1, 0, 1], [0, 0, 0, 1]]


def test_binary_copy_copies_and_does_not_alias():
    x = np.array([[0, 1, 1, 0]], dtype=np.uint8)
    y = get_problem("binary_copy").iterate(x)
    assert y.tolist() == [[0, 1, 1, 0]]
    y[0, 0] = 1
    assert x[0, 0] == 0


@pytest.mark.parametrize(
    ("name", "token", "values"),
    [("polynomial", 58, set(range(1, 11))), ("parity", 59, {0, 1}), ("binary_copy", 60, {0, 1})],
)
def test_samples_cover_exactly_the_input_range(name, token, values):
    problem = get_problem(name)
    x = problem.sample(np.random.default_rng(0), 500, 7)
    assert problem.token == token
    assert x.shape == (500, 7) and x.dtype == np.uint8
    assert set(np.unique(x).tolist()) == values == set(problem.inputs)


def test_bits_are_roughly_fair():
    x = get_problem("parity").sample(np.random.default_rng(1), 4000, 10)
    assert abs(x.mean() - 0.5) < 0.02


def test_states_stay_within_n_values():
    for problem in PROBLEMS.values():
        x = problem.sample(np.random.default_rng(2), 300, 12)
        y = problem.iterate(x)
        assert y.dtype == np.uint8 and y.max() < problem.n_values


def test_registry_holds_the_three_problems():
    assert sorted(PROBLEMS) == ["binary_copy", "parity", "polynomial"]
    assert all(isinstance(p, Problem) and p.parts == (p,) for p in PROBLEMS.values())


def test_mixture_keeps_its_order():
    mixture = get_problem("parity+polynomial")
    assert isinstance(mixture, Mixture)
    assert [p.name for p in mixture.parts] == ["parity", "polynomial"]
    assert mixture.name == "parity+polynomial"


@pytest.mark.parametrize(
    "name",
    ["poly", "", "parity+parity", "parity+", "a+b", "parity+polynomial+binary_copy", "Parity"],
)
def test_unknown_names_raise_a_clear_error(name):
    with pytest.raises(ProblemError) as caught:
        get_problem(name)
    message = str(caught.value)
    assert repr(name) in message
    assert all(known in message for known in PROBLEMS)


def test_problem_error_is_a_value_error():
    with pytest.raises(ValueError):
        get_problem("nope")

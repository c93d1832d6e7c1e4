"""Specs: bounds and their one-line messages, flat keys, --set parsing, the budget estimate."""

import pytest

from core.specs.budget import count_params, estimate_budget
from core.specs.errors import SpecError
from core.specs.overrides import apply_overrides, parse_set
from core.specs.run import FLAT_KEYS, ModelSpec, ProblemSpec, RunSpec, TrainSpec, parse_init_from

BASE = {"problem": "polynomial"}


def error_lines(overrides: dict, base: dict = BASE) -> list[str]:
    with pytest.raises(SpecError) as caught:
        apply_overrides(base, overrides)
    return str(caught.value).splitlines()


# ------------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"d_model": 65536}, "d_model: must be <= 2048 (got 65536)"),
        ({"max_len": 10**6}, "max_len: must be <= 64 (got 1000000)"),
        ({"lr": -0.001}, "lr: must be > 0.0 (got -0.001)"),
        ({"lr": 1.5}, "lr: must be <= 1.0 (got 1.5)"),
        ({"n_layers": 0}, "n_layers: must be >= 1 (got 0)"),
        ({"dropout": 0.95}, "dropout: must be <= 0.9 (got 0.95)"),
        ({"steps": "many"}, "steps: must be an integer (got 'many')"),
        ({"lr": float("nan")}, "lr: must be a finite number (got nan)"),
        ({"norm": "post"}, "norm: must be one of 'paper' or 'pre' (got 'post')"),
        ({"qk_scale": 0.5}, "qk_scale: must be >= 1.0 (got 0.5)"),
    ],
)
def test_a_bound_reads_as_one_line_naming_field_and_value(overrides, line):
    assert error_lines(overrides) == [line]


def test_every_error_gets_its_own_line():
    lines = error_lines({"d_model": 65536, "max_len": 10**6, "lr": -1.0})
    assert len(lines) == 3
    assert [line.split(":")[0] for line in lines] == ["max_len", "d_model", "lr"]


def test_errors_are_also_listed_as_field_message_pairs():
    with pytest.raises(SpecError) as caught:
        apply_overrides(BASE, {"d_model": 65536})
    assert caught.value.errors == [("d_model", "must be <= 2048 (got 65536)")]


def test_missing_problem_is_required():
    assert error_lines({}, base={}) == ["problem: is required"]


# ------------------------------------------------------------------------------ cross-field rules


@pytest.mark.parametrize(
    ("overrides", "field", "needle"),
    [
        ({"n_heads": 3}, "d_model", "divisible by n_heads (3)"),
        ({"min_len": 20}, "max_len", ">= min_len (20)"),
        ({"test_max_len": 8}, "test_max_len", ">= max_len (16)"),
        ({"test_max_len": 65}, "test_max_len", "<= 64"),
        ({"steps": 100, "warmup_steps": 101}, "warmup_steps", "<= steps (100)"),
        ({"qk_scale_from": 500, "qk_scale_until": 400}, "qk_scale_until", ">= qk_scale_from (500)"),
        ({"pos_encoding": "rope", "d_model": 12, "n_heads": 4}, "pos_encoding", "even d_head"),
        ({"pos_encoding": "rope", "pos_init_std": 0.1}, "pos_init_std", "pos_encoding learned or frozen"),
        ({"trainable": "mlp2", "n_layers": 1}, "trainable", "below n_layers (1)"),
        ({"trainable": "blocks.2.attn"}, "trainable", "below n_layers (2)"),
        ({"trainable": "blocks.1.mlpp"}, "trainable", "a block holds"),
        ({"trainable": "encoder.mlp"}, "trainable", "'encoder.mlp' is not"),
    ],
)
def test_cross_field_rules_blame_one_field(overrides, field, needle):
    [line] = error_lines(overrides)
    assert line.startswith(f"{field}: ")
    assert needle in line


@pytest.mark.parametrize("problem", ["polynomial", "parity", "binary_copy", "parity+polynomial", "binary_copy+parity"])
def test_problem_names_and_mixtures_of_two_distinct_ones_are_valid(problem):
    assert RunSpec.from_flat({"problem": problem}).problem.parts == tuple(problem.split("+"))


@pytest.mark.parametrize("problem", ["addition", "parity+parity", "parity+polynomial+binary_copy", "parity+", ""])
def test_other_problem_names_are_rejected(problem):
    [line] = error_lines({"problem": problem})
    assert line.startswith("problem: must be one of polynomial, parity, binary_copy")


@pytest.mark.parametrize("value", ["3@100", "12@0"])
def test_init_from_is_run_at_step(value):
    spec = apply_overrides(BASE, {"init_from": value})
    run, step = value.split("@")
    assert spec.train.init_source == parse_init_from(value) == (int(run), int(step))


@pytest.mark.parametrize("value", ["3", "@100", "run3@100", "3@-1", "3@100@2"])
def test_malformed_init_from_is_rejected(value):
    assert error_lines({"init_from": value}) == [f"init_from: must be RUN_ID@STEP, e.g. 3@6400 (got {value!r})"]


@pytest.mark.parametrize(
    ("value", "modules"),
    [("all", None), ("mlp2", ("blocks.1.mlp",)), ("blocks.1.mlp, unembed", ("blocks.1.mlp", "unembed"))],
)
def test_trainable_resolves_to_module_names(value, modules):
    assert apply_overrides(BASE, {"trainable": value}).train.trainable_modules == modules


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12", None])
def test_devices_accepted(device):
    assert apply_overrides(BASE, {"device": device}).train.device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU0", "mps"])
def test_other_devices_rejected(device):
    [line] = error_lines({"device": device})
    assert line.startswith("device: must be cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------ flat keys


def test_unknown_keys_are_named_with_close_matches():
    with pytest.raises(SpecError) as caught:
        apply_overrides(BASE, {"d_modle": 64, "learning_rate": 1e-3})
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("d_modle: unknown key; did you mean 'd_model'")
    assert lines[1].startswith("learning_rate: unknown key")
    assert len(lines) == 2


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    [line] = error_lines({"zzz": 1})
    assert line.startswith("zzz: unknown key; known keys: problem, min_len")


def test_unknown_keys_in_the_base_are_caught_too():
    [line] = error_lines({}, base={**BASE, "shufle": True})
    assert line.startswith("shufle: unknown key; did you mean 'shuffle'")


def test_flat_round_trip_is_exact():
    spec = apply_overrides(
        {"problem": "parity+polynomial"},
        {"d_model": 64, "n_heads": 4, "test_max_len": 20, "init_from": "3@100", "trainable": "mlp2", "bias": True},
    )
    flat = spec.to_flat()
    assert list(flat) == list(FLAT_KEYS)
    assert RunSpec.from_flat(flat) == spec
    assert RunSpec.from_flat(flat).to_flat() == flat


DESIGN_KEYS = (  # docs/architecture.md, "Interfaces other programs rely on"
    "problem", "min_len", "max_len", "n_train_per_len", "n_test_per_len", "data_mix",
    "n_layers", "n_heads", "d_model", "d_mlp", "pos_encoding", "norm", "bias", "dropout",
    "steps", "batch_size", "lr", "optimizer", "warmup_steps", "schedule", "shuffle", "seed",
    "eval_every", "snapshot_every", "checkpoint_every", "init_from", "trainable", "device",
)


def test_flat_keys_are_unique_and_cover_the_design_list():
    sections = [ProblemSpec, ModelSpec, TrainSpec]
    assert len(FLAT_KEYS) == len(set(FLAT_KEYS)) == sum(len(s.model_fields) for s in sections)
    assert set(DESIGN_KEYS) <= set(FLAT_KEYS)


def test_d_mlp_is_resolved_and_n_ctx_derived():
    spec = apply_overrides(BASE, {"d_model": 64, "max_len": 10, "test_max_len": 12})
    assert spec.model.d_mlp == 256
    assert spec.model.d_head == 64
    assert spec.n_ctx == spec.problem.n_ctx == 2 * 12 + 3
    assert "n_ctx" not in spec.to_flat()
    assert apply_overrides(BASE, {"d_mlp": 100}).model.d_mlp == 100


def test_specs_are_frozen():
    spec = RunSpec.from_flat(BASE)
    with pytest.raises(Exception):
        spec.model.d_model = 64  # type: ignore[misc]


# ------------------------------------------------------------------------------ --set parsing


def test_parse_set_coerces_by_field_type():
    parsed = parse_set(
        ["d_model=64", "shuffle=true", "init_from=3@100", "lr=1e-3", "d_mlp=none", "device=null",
         "pos_encoding=none", "bias=YES", "eval_generate=0", "problem=parity"]
    )
    assert parsed == {
        "d_model": 64, "shuffle": True, "init_from": "3@100", "lr": 1e-3, "d_mlp": None, "device": None,
        "pos_encoding": "none", "bias": True, "eval_generate": False, "problem": "parity",
    }
    assert type(parsed["lr"]) is float and type(parsed["d_model"]) is int


@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("no", False), ("No", False)])
def test_parse_set_bools(text, value):
    assert parse_set([f"shuffle={text}"]) == {"shuffle": value}


def test_parse_set_later_items_win():
    assert parse_set(["seed=1", "seed=2"]) == {"seed": 2}


def test_parse_set_reports_every_bad_item():
    with pytest.raises(SpecError) as caught:
        parse_set(["d_model=abc", "shufle=true", "novalue", "shuffle=maybe", "lr=fast", "d_model=none"])
    assert str(caught.value).splitlines() == [
        "d_model: must be an integer (got 'abc')",
        "shufle: unknown key; did you mean 'shuffle' or 'schedule'?",
        "novalue: expected KEY=VALUE (got 'novalue')",
        "shuffle: must be true or false (got 'maybe')",
        "lr: must be a number (got 'fast')",
        "d_model: must be an integer (got 'none')",
    ]


def test_parse_set_then_apply_builds_the_spec():
    spec = apply_overrides(BASE, parse_set(["d_model=64", "n_heads=2", "schedule=cosine"]))
    assert (spec.model.d_model, spec.model.n_heads, spec.train.schedule) == (64, 2, "cosine")


# ------------------------------------------------------------------------------ budget


def test_paper_model_has_414720_parameters():
    spec = RunSpec.from_flat(BASE)
    assert spec.n_ctx == 35
    assert count_params(spec) == estimate_budget(spec).n_params == 414_720


@pytest.mark.parametrize(
    ("overrides", "delta"),
    [
        ({"pos_encoding": "rope"}, -35 * 128),
        ({"pos_encoding": "none"}, -35 * 128),
        ({"pos_encoding": "frozen"}, 0),
        # biases: attention 4d + MLP (d_mlp + d) per layer, 5 norm biases, unembedding d_vocab
        ({"bias": True}, 2 * (4 * 128 + 512 + 128) + 5 * 128 + 64),
    ],
)
def test_parameter_count_follows_the_options(overrides, delta):
    assert count_params(apply_overrides(BASE, overrides)) == 414_720 + delta


def test_budget_scales_with_the_step_and_the_run():
    paper = estimate_budget(RunSpec.from_flat(BASE))
    assert paper.tokens_per_step == 256 * 34
    assert paper.flops_per_step == 6 * 414_720 * 256 * 34
    # calibrated to the reference machine: about 290 ms a step, so about 5 hours for 64,000 steps
    assert 0.25 < paper.est_seconds_cpu / 64_000 < 0.33
    half = estimate_budget(apply_overrides(BASE, {"steps": 32_000, "batch_size": 512}))
    assert half.est_seconds_cpu == pytest.approx(paper.est_seconds_cpu)
    assert half.train_bytes > paper.train_bytes > 16 * 414_720
    assert estimate_budget(apply_overrides(BASE, {"snapshot_every": 64})).snapshot_bytes > paper.snapshot_bytes


def test_vocabulary_agrees_with_the_problems():
    tokens = pytest.importorskip("core.problems.tokens")
    assert ModelSpec().d_vocab == tokens.VOCAB_SIZE


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"bias": True, "n_heads": 4, "d_model": 64, "d_mlp": 100},
        {"pos_encoding": "rope", "n_layers": 3, "test_max_len": 20},
        {"pos_encoding": "none", "bias": True},
        {"pos_encoding": "frozen", "norm": "pre", "n_layers": 1},
    ],
)
def test_parameter_count_matches_the_built_model(overrides):
    pytest.importorskip("torch")
    model_module = pytest.importorskip("core.ml.model")
    spec = apply_overrides(BASE, overrides)
    model = model_module.Transformer(model_module.ModelConfig.from_spec(spec))
    assert sum(p.numel() for p in model.parameters()) == count_params(spec)

"""Names: hook sites, metric and score keys, job kinds and queues."""

import pytest

from core import names


def test_hook_names_follow_transformer_lens():
    assert names.hook_name(1, "pattern") == "blocks.1.attn.hook_pattern"
    assert names.hook_name(0, "attn_scores") == "blocks.0.attn.hook_attn_scores"
    assert names.hook_name(0, "z") == "blocks.0.attn.hook_z"
    assert names.hook_name(2, "resid_mid") == "blocks.2.hook_resid_mid"
    assert names.hook_name(1, "mlp_post") == "blocks.1.mlp.hook_post"
    assert names.hook_name(None, "embed") == "hook_embed"
    assert names.hook_name(None, "pos_embed") == "hook_pos_embed"


@pytest.mark.parametrize(("layer", "site"), [(0, "patern"), (None, "pattern"), (-1, "pattern"), (1, "embed"), (True, "z")])
def test_bad_hook_requests_raise(layer, site):
    with pytest.raises(ValueError):
        names.hook_name(layer, site)


def test_unknown_site_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: embed, pos_embed, resid_pre"):
        names.hook_name(0, "patern")


def test_all_hook_names_cover_every_layer_once_in_forward_order():
    sites = names.all_hook_names(2)
    assert len(sites) == len(set(sites)) == 2 + 2 * len(names.BLOCK_SITES)
    assert sites[:3] == ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"]
    assert sites.index("blocks.0.attn.hook_pattern") < sites.index("blocks.0.hook_resid_post")
    assert sites.index("blocks.0.hook_resid_post") < sites.index("blocks.1.hook_resid_pre")
    assert sites[-1] == "blocks.1.hook_resid_post"


def test_hook_sites_exist_in_the_model():
    pytest.importorskip("torch")
    model_module = pytest.importorskip("core.ml.model")
    model = model_module.Transformer(model_module.ModelConfig(n_layers=2))
    assert set(names.all_hook_names(2)) <= set(model.hook_points)


def test_block_module_names():
    assert names.block_module(1, "mlp") == "blocks.1.mlp"
    with pytest.raises(ValueError):
        names.block_module(1, "ffn")


def test_metric_keys():
    assert names.metric_key("test", "seq_acc") == "test/seq_acc"
    assert names.metric_key("test", names.SEQ_ACC, 7) == "test/seq_acc/L7"
    assert names.parse_metric_key("test/seq_acc/L7") == ("test", "seq_acc", 7)
    assert names.parse_metric_key("train/loss") == ("train", "loss", None)


@pytest.mark.parametrize(("args", "kwargs"), [(("val", "loss"), {}), (("test", "seq/acc"), {}), (("test", "loss"), {"length": 0})])
def test_bad_metric_keys_raise(args, kwargs):
    with pytest.raises(ValueError):
        names.metric_key(*args, **kwargs)


def test_score_keys():
    assert names.score_key("iteration", "peaky_thres", 1, 0) == "score/iteration/peaky_thres/L1H0"
    assert names.score_key("eoi_locator", "inv", 0, 3, length=7) == "score/eoi_locator/inv/L0H3/len7"
    assert names.parse_score_key("score/iteration/peaky_thres/L1H0/len7") == ("iteration", "peaky_thres", 1, 0, 7)
    assert names.parse_score_key("score/iteration/mul/L1H0") == ("iteration", "mul", 1, 0, None)


@pytest.mark.parametrize("key", ["score/induction/peaky_thres/L1H0", "score/iteration/peaky/L1H0", "test/seq_acc", "score/iteration/inv/L1"])
def test_bad_score_keys_do_not_parse(key):
    with pytest.raises(ValueError):
        names.parse_score_key(key)


def test_score_and_metric_keys_never_collide():
    with pytest.raises(ValueError):
        names.parse_metric_key(names.score_key("iteration", "inv", 1, 0, 4))


def test_roles_agree_with_the_problems():
    problems = pytest.importorskip("core.problems")
    assert tuple(problems.ROLES) == names.ROLES
    assert set(problems.PROBLEMS) == set(names.PROBLEM_NAMES)


def test_jobs_and_queues():
    assert names.JOB_KINDS == ("train", "intervene", "sweep")
    assert names.queue_for_device("cuda:1") == names.QUEUE_GPU == "gpu"
    assert names.queue_for_device(None) == names.queue_for_device("cpu") == "cpu"


def test_parsed_keys_name_their_parts():
    found = names.parse_score_key("score/eoi_locator/inv/L0H3/len7")
    assert (found.role, found.score, found.layer, found.head, found.length) == ("eoi_locator", "inv", 0, 3, 7)
    assert found.label == "L0H3"
    metric = names.parse_metric_key("test/seq_acc/L7")
    assert (metric.split, metric.name, metric.length) == ("test", "seq_acc", 7)


@pytest.mark.parametrize(("role", "score", "layer", "head", "length"),
                         [("iteration", "peaky_thres", 1, 0, None), ("eoi_locator", "mul", 0, 11, 4), ("iteration", "inv", 3, 2, 64)])
def test_score_keys_round_trip(role, score, layer, head, length):
    assert names.parse_score_key(names.score_key(role, score, layer, head, length)) == (role, score, layer, head, length)


def test_try_parse_tells_score_keys_from_metric_keys():
    score, metric = names.score_key("iteration", "inv", 1, 0), names.metric_key("test", "seq_acc", 3)
    assert names.try_parse_score_key(metric) is None and names.try_parse_metric_key(score) is None
    assert names.try_parse_score_key(score) == names.parse_score_key(score)
    assert names.try_parse_metric_key(metric) == names.parse_metric_key(metric)
    assert names.try_parse_score_key("score/induction/inv/L1H0") is None


@pytest.mark.parametrize(("role", "score"), [("induction", "inv"), ("iteration", "peaky")])
def test_score_keys_refuse_unknown_roles_and_scores(role, score):
    with pytest.raises(ValueError, match="unknown"):
        names.score_key(role, score, 1, 0)


def test_score_prefixes_match_their_keys():
    key = names.score_key("iteration", "peaky_thres", 1, 0, 7)
    assert names.score_prefix() == "score/"
    assert names.score_prefix("iteration") == "score/iteration/"
    assert names.score_prefix("iteration", "peaky_thres") == "score/iteration/peaky_thres/"
    assert all(key.startswith(names.score_prefix(*parts)) for parts in [(), ("iteration",), ("iteration", "peaky_thres")])
    assert not names.score_key("iteration", "peaky_abs", 1, 0).startswith(names.score_prefix("iteration", "peaky_thres"))
    with pytest.raises(ValueError):
        names.score_prefix(score="inv")


def test_head_score_keys_cover_every_head_in_order():
    keys = names.head_score_keys("eoi_locator", "inv", 2, 3)
    assert len(keys) == len(set(keys)) == 6
    assert [names.parse_score_key(k).label for k in keys] == ["L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2"]
    assert all(names.parse_score_key(k).length is None for k in keys)


def test_head_labels():
    assert names.head_label(1, 0) == "L1H0"
    assert names.every_head_label(0) == "L0H*"
    assert names.parse_head_label("L12H3") == (12, 3)
    for bad in ("L1H*", "l1h0", "L1", "H0", "L-1H0", 7):
        with pytest.raises(ValueError, match="head label"):
            names.parse_head_label(bad)
    with pytest.raises(ValueError):
        names.head_label(-1, 0)


def test_roles_and_their_layers():
    assert names.EXPECTED_LAYER == {"eoi_locator": 0, "iteration": 1}
    assert set(names.ROLE_TITLES) == set(names.ROLE_SHORT) == set(names.EXPECTED_LAYER) == set(names.ROLES)
    assert [names.role_of_layer(n) for n in (0, 1, 2)] == ["eoi_locator", "iteration", "iteration"]
    assert all(names.role_of_layer(layer) == role for role, layer in names.EXPECTED_LAYER.items())


def test_score_pattern_accepts_exactly_the_scores():
    import re

    assert all(re.fullmatch(names.SCORE_PATTERN, score) for score in names.SCORES)
    assert not any(re.search(names.SCORE_PATTERN, bad) for bad in ("peaky", "mulx", "inv|mul", ""))
    assert names.HEADLINE_SCORE in names.SCORES


def test_checkpoint_and_intervention_kinds():
    assert names.CHECKPOINT_KINDS == ("resume", "weights")
    assert names.INTERVENTION_KINDS == ("ablate", "edge", "pattern", "activation_patch", "probe")


def test_the_database_enums_spell_the_same_kinds():
    from core.db.models import CheckpointKind, JobKind

    assert tuple(kind.value for kind in JobKind) == names.JOB_KINDS
    assert sorted(kind.value for kind in CheckpointKind) == sorted(names.CHECKPOINT_KINDS)


def test_intervention_sites_are_hook_sites():
    assert set(names.PATCH_SITES) < set(names.PROBE_SITES) <= set(names.BLOCK_SITES)
    assert all(names.hook_name(1, site).startswith("blocks.1.") for site in names.PROBE_SITES)

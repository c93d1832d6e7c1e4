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

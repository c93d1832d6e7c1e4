"""Hook points: naming, attach/detach discipline, replacing and caching activations."""

from __future__ import annotations

import pytest
import torch

from core.ml.hooks import HookPoint, active, hooks, run_with_cache
from core.ml.model import ModelConfig, Transformer
from core.names import all_hook_names, hook_name


@pytest.fixture
def model() -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=16, d_mlp=32, n_ctx=11, dropout=0.0)
    return Transformer(cfg).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(3))


def test_hook_points_are_named_by_their_module_path(model):
    for name, point in model.hook_points.items():
        assert point.name == name
        assert dict(model.named_modules())[name] is point
    assert set(all_hook_names(2)) <= set(model.hook_points)
    assert hook_name(1, "pattern") in model.hook_points


def test_hook_point_runs_functions_in_order_and_none_keeps_the_activation():
    point = HookPoint()
    point.name = "p"
    calls = []
    point.fns = [lambda a, n: calls.append(("first", n)), lambda a, n: a * 2, lambda a, n: a + 1]
    out = point(torch.ones(3))
    torch.testing.assert_close(out, torch.full((3,), 3.0))  # (1 * 2) + 1, the None in between kept it
    assert calls == [("first", "p")]


def test_hooks_are_attached_inside_the_block_only(model, x):
    seen = []
    with hooks(model, [("blocks.0.attn.hook_pattern", lambda a, n: seen.append(n))]) as m:
        assert m is model
        assert active(model)
        model(x)
    assert seen == ["blocks.0.attn.hook_pattern"]
    assert not active(model)
    model(x)
    assert seen == ["blocks.0.attn.hook_pattern"]


def test_nested_contexts_remove_only_their_own_hooks(model, x):
    outer = lambda a, n: None  # noqa: E731
    inner = lambda a, n: None  # noqa: E731
    with hooks(model, [("hook_embed", outer)]):
        with hooks(model, [("hook_embed", inner), ("hook_embed", outer)]):
            assert model.hook_points["hook_embed"].fns == [outer, inner, outer]
        assert model.hook_points["hook_embed"].fns == [outer]
    assert not active(model)


def test_exception_in_the_body_detaches_everything(model, x):
    with pytest.raises(ZeroDivisionError):
        with hooks(model, [(name, lambda a, n: None) for name in all_hook_names(2)]):
            assert active(model)
            1 / 0
    assert not active(model)


def test_exception_in_a_hook_detaches_everything(model, x):
    def bad(act, name):
        raise ValueError(f"bad at {name}")

    with pytest.raises(ValueError, match="bad at blocks.1.mlp.hook_post"):
        with hooks(model, [("blocks.0.hook_resid_post", lambda a, n: None), ("blocks.1.mlp.hook_post", bad)]):
            model(x)
    assert not active(model)


def test_unknown_name_raises_key_error_listing_known_sites(model):
    with pytest.raises(KeyError) as info:
        with hooks(model, [("hook_embed", lambda a, n: None), ("blocks.0.attn.hook_patern", lambda a, n: None)]):
            pytest.fail("the body must not run")
    assert "blocks.0.attn.hook_patern" in str(info.value)
    assert "blocks.0.attn.hook_pattern" in str(info.value)  # the known names are listed
    assert not active(model)


def test_run_with_cache_returns_the_same_logits_and_detached_shapes(model, x):
    names = ["hook_embed", "blocks.0.attn.hook_q", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z",
             "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"]
    with torch.no_grad():
        plain = model(x)
    logits, cache = run_with_cache(model, x, names)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=0)
    assert set(cache) == set(names)
    assert cache["hook_embed"].shape == (2, 11, 16)
    assert cache["blocks.0.attn.hook_q"].shape == (2, 11, 2, 8)  # [B, T, H, d_head]
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, 2, 11, 11)  # [B, H, Tq, Tk]
    assert cache["blocks.1.attn.hook_z"].shape == (2, 11, 2, 8)
    assert cache["blocks.1.mlp.hook_post"].shape == (2, 11, 32)
    assert all(not t.requires_grad for t in cache.values())
    # the last residual, through the final norm and unembedding, gives the logits
    with torch.no_grad():
        again = model.unembed(model.ln_final(cache["blocks.1.hook_resid_post"]))
    torch.testing.assert_close(again, logits, atol=1e-5, rtol=0)
    assert not active(model)


def test_hooking_q_and_k_does_not_change_the_output(model, x):
    """q/k/v hooks do not force the explicit path; the result must match either way."""
    with torch.no_grad():
        plain = model(x)
        with hooks(model, [("blocks.0.attn.hook_q", lambda a, n: a.clone()),
                           ("blocks.0.attn.hook_k", lambda a, n: None)]):
            hooked = model(x)
    torch.testing.assert_close(hooked, plain, atol=1e-5, rtol=0)


def test_replacing_scores_before_softmax_moves_the_pattern(model, x):
    """Pushing one key's score up makes the pattern put (nearly) all weight on it."""

    def favour_key_zero(scores, name):
        scores = scores.clone()
        scores[..., 0] = scores[..., 0] + 100.0
        return scores

    with hooks(model, [("blocks.0.attn.hook_attn_scores", favour_key_zero)]):
        _, cache = run_with_cache(model, x, ["blocks.0.attn.hook_pattern"])
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.all(pattern[..., 0] > 0.999)
    assert not active(model)

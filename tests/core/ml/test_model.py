"""The transformer's invariants: attention patterns, the two attention paths, hooks, sizes."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from core.ml import hooks as hooks_mod
from core.ml.hooks import hooks, run_with_cache
from core.ml.model import ModelConfig, Transformer
from core.names import all_hook_names
from core.specs.budget import count_params
from core.specs.run import RunSpec

CONFIGS = list(itertools.product(("paper", "pre"), ("learned", "frozen", "rope", "none")))
N_CTX = 11


def tiny_model(norm: str, pos: str, *, n_heads: int = 2, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=2, n_heads=n_heads, d_model=16, d_mlp=32, n_ctx=N_CTX,
                      pos_encoding=pos, norm=norm, dropout=0.1)
    return Transformer(cfg).eval()


def tokens(n: int = 3, width: int = N_CTX, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (n, width), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm,pos", CONFIGS)
def test_pattern_rows_sum_to_one_and_are_causal(norm, pos):
    model = tiny_model(norm, pos)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(2)]
    _, cache = run_with_cache(model, tokens(), names)
    for name in names:
        pattern = cache[name]  # [B, H, T, T]
        assert pattern.shape == (3, 2, N_CTX, N_CTX)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 2, N_CTX), atol=1e-6, rtol=0)
        above = torch.ones(N_CTX, N_CTX, dtype=torch.bool).triu(1)
        assert torch.all(pattern[..., above] == 0)
        assert torch.all(pattern >= 0)
        # row 0 can only attend to itself
        torch.testing.assert_close(pattern[..., 0, 0], torch.ones(3, 2))


@pytest.mark.parametrize("norm,pos", CONFIGS)
def test_fused_and_explicit_paths_give_the_same_logits(norm, pos):
    model = tiny_model(norm, pos)
    x = tokens()
    assert not model.explicit
    with torch.no_grad():
        fused = model(x)
        model.explicit = True
        assert model.explicit
        explicit = model(x)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm,pos", CONFIGS)
def test_identity_hooks_on_every_site_change_nothing(norm, pos):
    model = tiny_model(norm, pos)
    x = tokens()
    names = all_hook_names(2)
    assert set(names) <= set(model.hook_points)
    seen: list[str] = []

    def identity(act, name):
        seen.append(name)
        return act.clone()

    def observe(act, name):
        seen.append(name)  # returns None: leaves the activation as it was

    with torch.no_grad():
        plain = model(x)
        for fn in (identity, observe):
            seen.clear()
            with hooks(model, [(name, fn) for name in names]):
                hooked = model(x)
            torch.testing.assert_close(hooked, plain, atol=1e-5, rtol=0)
            expected = set(names) - ({"hook_pos_embed"} if pos in ("rope", "none") else set())
            assert set(seen) == expected
    assert not hooks_mod.active(model)


def test_a_replacing_hook_changes_the_output_and_is_removed_after():
    model = tiny_model("paper", "learned")
    x = tokens()
    with torch.no_grad():
        plain = model(x)
        with hooks(model, [("blocks.1.attn.hook_pattern", lambda p, n: torch.zeros_like(p))]):
            ablated = model(x)
        after = model(x)
    assert (ablated - plain).abs().max() > 1e-3
    torch.testing.assert_close(after, plain, atol=0, rtol=0)


def test_a_raising_hook_leaves_no_hook_attached():
    model = tiny_model("paper", "learned")

    def boom(act, name):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with hooks(model, [("blocks.0.hook_resid_pre", lambda a, n: None), ("blocks.1.attn.hook_z", boom)]):
            assert hooks_mod.active(model)
            model(tokens())
    assert not hooks_mod.active(model)
    assert all(not point.fns for point in model.hook_points.values())


def test_unknown_hook_names_raise_key_error_and_attach_nothing():
    model = tiny_model("paper", "learned")
    with pytest.raises(KeyError, match="blocks.7.attn.hook_pattern"):
        with hooks(model, [("blocks.0.attn.hook_pattern", lambda a, n: None),
                           ("blocks.7.attn.hook_pattern", lambda a, n: None)]):
            pass
    assert not hooks_mod.active(model)


@pytest.mark.parametrize("norm", ["paper", "pre"])
def test_residual_layout_follows_the_norm_option(norm):
    """paper: resid_mid = ln1(resid_pre) + attn_out; pre: resid_mid = resid_pre + attn_out."""
    model = tiny_model(norm, "learned")
    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid"]
    with torch.no_grad():
        _, cache = run_with_cache(model, tokens(), names)
        pre, attn_out, mid = (cache[n] for n in names)
        base = model.blocks[0].ln1(pre) if norm == "paper" else pre
    torch.testing.assert_close(mid, base + attn_out, atol=1e-5, rtol=0)
    other = pre if norm == "paper" else model.blocks[0].ln1(pre)
    assert (mid - (other + attn_out)).abs().max() > 1e-3


def test_positional_tables():
    learned, frozen = tiny_model("paper", "learned"), tiny_model("paper", "frozen")
    assert learned.pos_embed.weight.requires_grad
    assert not frozen.pos_embed.weight.requires_grad
    assert frozen.pos_embed.weight.shape == (N_CTX, 16)
    for pos in ("rope", "none"):
        model = tiny_model("paper", pos)
        assert not hasattr(model, "pos_embed")
        assert not any("pos_embed" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("pos", ["learned", "frozen"])
def test_pos_init_std_scales_the_table_and_moves_nothing_else(pos):
    def build(std: float) -> Transformer:
        torch.manual_seed(0)
        return Transformer(ModelConfig(n_layers=2, n_heads=2, d_model=16, d_mlp=32, n_ctx=N_CTX,
                                       pos_encoding=pos, pos_init_std=std))

    plain, small = build(1.0).state_dict(), build(0.1).state_dict()
    torch.testing.assert_close(small["pos_embed.weight"], 0.1 * plain["pos_embed.weight"])
    assert 0.8 < plain["pos_embed.weight"].std() < 1.2  # PyTorch's N(0, 1), the paper's init
    for name in plain.keys() - {"pos_embed.weight"}:
        assert torch.equal(small[name], plain[name]), name
    assert build(0.1).pos_embed.weight.requires_grad == (pos == "learned")


def test_without_positions_a_one_layer_model_is_blind_to_prefix_order():
    """No positional encoding, one layer: the last position sees its prefix as a set."""

    def one_layer(pos):
        torch.manual_seed(0)
        cfg = ModelConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, n_ctx=N_CTX, pos_encoding=pos)
        return Transformer(cfg).eval()

    x = tokens(n=1, width=6)
    swapped = x[:, [1, 0, 2, 3, 4, 5]]
    assert not torch.equal(x, swapped)
    with torch.no_grad():
        blind, learned = one_layer("none"), one_layer("learned")
        torch.testing.assert_close(blind(x)[:, -1], blind(swapped)[:, -1], atol=1e-5, rtol=0)
        assert (learned(x)[:, -1] - learned(swapped)[:, -1]).abs().max() > 1e-4


def test_paper_default_parameter_count():
    assert Transformer(ModelConfig()).n_params() == 414_720


@pytest.mark.parametrize("overrides", [
    {}, {"bias": True}, {"pos_encoding": "rope"}, {"pos_encoding": "frozen", "n_layers": 3},
    {"d_model": 32, "n_heads": 4, "d_mlp": 48, "max_len": 5},
])
def test_parameter_count_matches_the_spec_estimate(overrides):
    spec = RunSpec.from_flat({"problem": "parity", "d_model": 16, "max_len": 4, **overrides})
    assert Transformer(ModelConfig.from_spec(spec)).n_params() == count_params(spec)


@pytest.mark.parametrize("norm,pos", CONFIGS)
@pytest.mark.parametrize("explicit", [False, True])
def test_decoding_with_a_cache_gives_the_full_pass_logits(norm, pos, explicit):
    model = tiny_model(norm, pos)
    model.explicit = explicit
    x = tokens()
    with torch.no_grad():
        full = model(x)  # [B, T, d_vocab]
        cache = model.new_cache()
        prompt = model(x[:, :4], first_output=2, cache=cache)  # positions 2, 3; every key cached
        steps = [model(x[:, t:t + 1], cache=cache) for t in range(4, N_CTX)]  # one position each
    assert cache.length == N_CTX
    torch.testing.assert_close(torch.cat([prompt, *steps], dim=1), full[:, 2:], atol=1e-5, rtol=0)


def test_a_cache_counts_towards_n_ctx():
    model = tiny_model("paper", "learned")
    cache = model.new_cache()
    model(tokens(width=N_CTX - 1), cache=cache)
    with pytest.raises(ValueError, match=f"{N_CTX + 1} positions exceeds n_ctx"):
        model(tokens(width=2), cache=cache)


def test_n_ctx_overflow_raises():
    model = tiny_model("paper", "learned")
    model(tokens(width=N_CTX))  # exactly n_ctx is fine
    with pytest.raises(ValueError, match="n_ctx"):
        model(tokens(width=N_CTX + 1))


def test_dropout_is_active_in_train_mode_only():
    model = tiny_model("paper", "learned")
    x = tokens()
    with torch.no_grad():
        a, b = model(x), model(x)
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        model.train()
        assert (model(x) - a).abs().max() > 0


def test_gradients_flow_in_the_fused_path():
    model = tiny_model("paper", "learned").train()
    x = tokens()
    loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 64), x[:, 1:].reshape(-1))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("norm,pos", [("paper", "learned"), ("pre", "rope")])
def test_qk_scale_sharpens_attention_and_folds_into_a_plain_model(norm, pos):
    model = tiny_model(norm, pos)
    x = tokens()
    name = "blocks.0.attn.hook_pattern"
    with torch.no_grad():
        _, plain = run_with_cache(model, x, [name])
        model.qk_scale = 4.0
        sharp_logits, sharp = run_with_cache(model, x, [name])
        fused = model(x)  # the training path scales the same queries
        # a larger logit scale concentrates every row: its largest weight grows
        assert torch.all(sharp[name].amax(-1)[..., 1:] >= plain[name].amax(-1)[..., 1:] - 1e-6)
        folded = Transformer(model.cfg).eval()
        folded.load_state_dict(model.folded_state_dict())
        assert folded.qk_scale == 1.0
        torch.testing.assert_close(folded(x), sharp_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fused, sharp_logits, atol=1e-5, rtol=1e-5)
    # folding copies: the live W_Q is untouched
    live = model.state_dict()["blocks.0.attn.qkv.weight"]  # [3d, d]
    folded_w = model.folded_state_dict()["blocks.0.attn.qkv.weight"]
    torch.testing.assert_close(folded_w[:16], 4.0 * live[:16])  # W_Q rows scaled
    assert torch.equal(folded_w[16:], live[16:])  # W_K, W_V as they are


def test_embedding_dropout_zeroes_a_share_p_and_keeps_the_mean():
    from core.ml.model import EmbeddingDropout

    drop = EmbeddingDropout(0.1).train()
    torch.manual_seed(0)
    h = torch.ones(256, 34, 128)
    out = drop(h)
    zeroed = (out == 0).float().mean().item()
    assert abs(zeroed - 0.1) < 0.005  # 1.1M entries: the share is 0.1 to within a few 1e-4
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / 0.9))
    assert abs(out.mean().item() - 1.0) < 0.01  # inverted dropout keeps the expectation
    assert drop.eval()(h) is h and EmbeddingDropout(0.0).train()(h) is h

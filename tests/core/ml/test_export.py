"""Export: TransformerLens reproduces our patterns and logits; safetensors round-trips; paper norm is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from core.ml.export import ExportError, load_safetensors, save_safetensors, save_tl, tl_state_dict, to_hooked_transformer
from core.ml.hooks import run_with_cache
from core.ml.model import ModelConfig, Transformer
from core.problems import build_dataset


def transformer_lens():
    """The transformer_lens module; skipped where it cannot be imported, except under CI=true."""
    try:
        import transformer_lens
        from transformer_lens import HookedTransformer  # noqa: F401  (removed in 4.0: needs 3.x)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"transformer-lens (3.x) must be importable on CI: {exc}")
        pytest.skip(f"transformer-lens (3.x) is not importable here: {exc}")
    return transformer_lens


def trained_like(tiny_spec, **overrides):
    spec = tiny_spec(norm="pre", **overrides)
    torch.manual_seed(3)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    with torch.no_grad():  # make LayerNorm weights and biases non-trivial, as training would
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    tokens, _ = build_dataset(spec.problem).split("test")
    return model, torch.from_numpy(tokens[:24, :-1].astype(np.int64))


def assert_same_patterns_and_logits(model, tl, inputs) -> torch.Tensor:
    """Every layer's hook_pattern within 1e-5 and the logits within 1e-4; returns our logits."""
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    ours_logits, ours = run_with_cache(model, inputs, names)
    tl_logits, cache = tl.run_with_cache(inputs, names_filter=lambda name: name in names)
    for name in names:
        assert (cache[name] - ours[name]).abs().max() < 1e-5, name
    assert (tl_logits - ours_logits).abs().max() < 1e-4
    return ours_logits


@pytest.mark.parametrize("overrides", [{"n_heads": 2}, {"n_heads": 2, "bias": True, "pos_encoding": "rope"},
                                       {"pos_encoding": "none", "n_layers": 3}])
def test_transformer_lens_matches_patterns_and_logits(tiny_spec, overrides):
    transformer_lens()
    model, inputs = trained_like(tiny_spec, **overrides)
    tl = to_hooked_transformer(model)
    assert_same_patterns_and_logits(model, tl, inputs)


def test_saved_tl_files_load_in_two_lines(tiny_spec, tmp_path):
    tl_module = transformer_lens()
    import json

    model, inputs = trained_like(tiny_spec)
    save_tl(model, tmp_path)
    tl = tl_module.HookedTransformer(tl_module.HookedTransformerConfig(**json.loads((tmp_path / "tl_config.json").read_text())))
    tl.load_state_dict(torch.load(tmp_path / "tl_state_dict.pt"), strict=False)
    assert torch.allclose(tl(inputs), model(inputs), atol=1e-4)


def test_paper_norm_is_refused_and_safetensors_round_trip(tiny_spec, tmp_path):
    spec = tiny_spec()  # norm="paper", the default
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    with pytest.raises(ExportError, match="norm='paper' does not map onto TransformerLens"):
        tl_state_dict(model)
    save_safetensors(model, tmp_path, metadata={"run_id": 7, "step": 12})
    again = load_safetensors(tmp_path)
    inputs = torch.randint(0, 64, (3, 9))
    assert torch.equal(again(inputs), model(inputs))


def test_paper_norm_maps_exactly_with_permanent_hooks(tiny_spec):
    transformer_lens()
    spec = tiny_spec(n_heads=2)  # norm="paper"
    torch.manual_seed(4)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.3 * torch.randn_like(p))
    tokens, _ = build_dataset(spec.problem).split("test")
    inputs = torch.from_numpy(tokens[:24, :-1].astype(np.int64))
    tl = to_hooked_transformer(model, paper_norm_hooks=True)
    ours_logits = assert_same_patterns_and_logits(model, tl, inputs)
    tl.reset_hooks()  # a user's reset keeps the permanent norm hooks
    assert (tl(inputs) - ours_logits).abs().max() < 1e-4

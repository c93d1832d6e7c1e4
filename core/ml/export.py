"""Export a model: as a TransformerLens ``HookedTransformer``, or as safetensors + a JSON config.

TransformerLens (``transformer-lens`` 3.x: 4.0 removed ``HookedTransformer`` for its HF-backed
``TransformerBridge``, which cannot hold a model that has no Hugging Face architecture). The
model's hook names are already TransformerLens's; the weights are reshaped to its per-head layout:

| ours | TransformerLens |
| --- | --- |
| ``embed.weight`` [vocab, d] | ``embed.W_E`` |
| ``pos_embed.weight`` [n_ctx, d] (``none``: zeros; ``rope``: rotary, no table) | ``pos_embed.W_pos`` |
| ``blocks.l.ln1.weight`` / ``.bias`` (zeros without biases) | ``blocks.l.ln1.w`` / ``.b`` |
| ``blocks.l.attn.qkv.weight`` [3d, d], rows W_Q, W_K, W_V | ``blocks.l.attn.W_Q`` [H, d, d_head] (and K, V) |
| ``blocks.l.attn.out.weight`` [d, d] | ``blocks.l.attn.W_O`` [H, d_head, d] |
| ``blocks.l.mlp.fc_in.weight`` [d_mlp, d] / ``fc_out`` | ``blocks.l.mlp.W_in`` [d, d_mlp] / ``W_out`` |
| ``unembed.weight`` [vocab, d] | ``unembed.W_U`` [d, vocab] |

What does not map: ``norm="paper"``. There the stream itself is replaced by ``ln1(h)`` before
attention, so a block computes ``ln1(h) + attn(ln1(h))`` where every TransformerLens block
computes ``h + attn(ln1(h))``; no config expresses it, and exporting it anyway would silently
change the function. :func:`tl_config` raises :class:`ExportError` for it: export safetensors, or
train with ``norm=pre``. Everything else (learned, frozen, rotary and no positions; biases or none;
any layer and head count) maps exactly: a test checks hook_pattern and logits against ours.

In memory only, ``to_hooked_transformer(model, paper_norm_hooks=True)`` maps a ``norm="paper"``
model exactly anyway, with TransformerLens *permanent* hooks: a model without norms
(``normalization_type=None``) whose ``blocks.l.hook_resid_pre`` returns ln1(h) (the stream itself,
as the paper does), ``blocks.l.hook_mlp_in`` returns ln2, and the last ``hook_resid_post`` returns
ln_final. Caches then show the normalised values at those three sites. Such a model cannot be saved
as config + weights (hooks are code), so :func:`save_tl` still refuses it.

Safetensors: the model's own state dict, under its own names (``model.safetensors``), beside
``config.json`` (the ModelConfig, the run's flat spec, run id and step), loadable without this code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

TL_CONFIG = "tl_config.json"
TL_WEIGHTS = "tl_state_dict.pt"
SAFETENSORS = "model.safetensors"
CONFIG = "config.json"


class ExportError(ValueError):
    """The model cannot be exported in the asked format without changing what it computes."""


def tl_config(cfg, *, paper_norm_hooks: bool = False) -> dict:
    """HookedTransformerConfig keyword arguments for a ModelConfig (raises ExportError for norm='paper',
    unless ``paper_norm_hooks``: then a norm-free config that the hooks complete)."""
    if cfg.norm != "pre" and not paper_norm_hooks:
        raise ExportError(
            f"norm={cfg.norm!r} does not map onto TransformerLens: its blocks add attention to the normalised "
            "stream ln1(h), where TransformerLens adds it to h. Export safetensors instead, train with norm=pre, "
            "or build it in memory with to_hooked_transformer(model, paper_norm_hooks=True).")
    paper = cfg.norm == "paper"
    return {
        "n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_ctx": cfg.n_ctx, "d_head": cfg.d_head,
        "n_heads": cfg.n_heads, "d_mlp": cfg.d_mlp, "d_vocab": cfg.d_vocab, "act_fn": "gelu",
        "normalization_type": None if paper else "LN", "use_hook_mlp_in": paper, "eps": 1e-5,
        "default_prepend_bos": False,
        "positional_embedding_type": "rotary" if cfg.pos_encoding == "rope" else "standard",
        **({"rotary_dim": cfg.d_head, "rotary_adjacent_pairs": False, "rotary_base": 10000}
           if cfg.pos_encoding == "rope" else {}),
    }


def tl_state_dict(model, *, paper_norm_hooks: bool = False) -> dict[str, torch.Tensor]:
    """Our weights under TransformerLens names and shapes (see the module docstring's table); with
    ``paper_norm_hooks`` the norms are left out (the hooks apply them)."""
    cfg = model.cfg
    tl_config(cfg, paper_norm_hooks=paper_norm_hooks)  # refuse what does not map before building anything
    H, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def bias(name: str, size: int) -> torch.Tensor:
        return sd.get(name, torch.zeros(size))

    out = {"embed.W_E": sd["embed.weight"]}
    if cfg.pos_encoding in ("learned", "frozen"):
        out["pos_embed.W_pos"] = sd["pos_embed.weight"][:cfg.n_ctx]
    elif cfg.pos_encoding == "none":
        out["pos_embed.W_pos"] = torch.zeros(cfg.n_ctx, d)
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        for ln in ("ln1", "ln2"):
            out[f"{p}{ln}.w"] = sd[f"{p}{ln}.weight"]
            out[f"{p}{ln}.b"] = bias(f"{p}{ln}.bias", d)
        W = sd[f"{p}attn.qkv.weight"]  # [3d, d]
        b = bias(f"{p}attn.qkv.bias", 3 * d)  # [3d]
        for i, name in enumerate("QKV"):
            out[f"{p}attn.W_{name}"] = W[i * d:(i + 1) * d].view(H, dh, d).transpose(1, 2).contiguous()  # [H, d, dh]
            out[f"{p}attn.b_{name}"] = b[i * d:(i + 1) * d].view(H, dh).contiguous()  # [H, dh]
        out[f"{p}attn.W_O"] = sd[f"{p}attn.out.weight"].T.reshape(H, dh, d).contiguous()  # [H, dh, d]
        out[f"{p}attn.b_O"] = bias(f"{p}attn.out.bias", d)
        out[f"{p}mlp.W_in"] = sd[f"{p}mlp.fc_in.weight"].T.contiguous()  # [d, d_mlp]
        out[f"{p}mlp.b_in"] = bias(f"{p}mlp.fc_in.bias", cfg.d_mlp)
        out[f"{p}mlp.W_out"] = sd[f"{p}mlp.fc_out.weight"].T.contiguous()  # [d_mlp, d]
        out[f"{p}mlp.b_out"] = bias(f"{p}mlp.fc_out.bias", d)
    out["ln_final.w"] = sd["ln_final.weight"]
    out["ln_final.b"] = bias("ln_final.bias", d)
    if cfg.norm == "paper":  # the permanent hooks apply the norms
        out = {k: v for k, v in out.items() if ".ln" not in k and not k.startswith("ln_final")}
    out["unembed.W_U"] = sd["unembed.weight"].T.contiguous()  # [d, vocab]
    out["unembed.b_U"] = bias("unembed.bias", cfg.d_vocab)
    return out


def to_hooked_transformer(model, *, paper_norm_hooks: bool = False):
    """A transformer_lens.HookedTransformer computing exactly what ``model`` computes (eval mode).
    ``paper_norm_hooks``: map a norm='paper' model with permanent hooks (module docstring)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = model.cfg
    tl = HookedTransformer(HookedTransformerConfig(**tl_config(cfg, paper_norm_hooks=paper_norm_hooks), device="cpu"))
    state = tl.state_dict()
    weights = tl_state_dict(model, paper_norm_hooks=paper_norm_hooks)
    unknown = set(weights) - set(state)
    if unknown:
        raise ExportError(f"TransformerLens has no parameters named {sorted(unknown)}")
    state.update(weights)
    tl.load_state_dict(state)
    if cfg.norm == "paper":
        for name, ln in _paper_norm_sites(model):
            tl.add_hook(name, _norm_hook(ln), is_permanent=True)
    return tl.eval()


def _paper_norm_sites(model) -> list[tuple[str, torch.nn.LayerNorm]]:
    last = model.cfg.n_layers - 1
    sites = []
    for l, block in enumerate(model.blocks):
        sites += [(f"blocks.{l}.hook_resid_pre", block.ln1), (f"blocks.{l}.hook_mlp_in", block.ln2)]
    return sites + [(f"blocks.{last}.hook_resid_post", model.ln_final)]


def _norm_hook(ln: torch.nn.LayerNorm):
    weight = ln.weight.detach().clone()
    bias = None if ln.bias is None else ln.bias.detach().clone()

    def hook(x: torch.Tensor, hook) -> torch.Tensor:  # x [batch, pos, d_model]
        return torch.nn.functional.layer_norm(x, weight.shape, weight, bias, ln.eps)
    return hook


def save_tl(model, out_dir: str | Path) -> list[Path]:
    """Write tl_config.json and tl_state_dict.pt; a TransformerLens user loads them in two lines:

        model = HookedTransformer(HookedTransformerConfig(**json.load(open("tl_config.json"))))
        model.load_state_dict(torch.load("tl_state_dict.pt"), strict=False)   # buffers are rebuilt
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / TL_CONFIG).write_text(json.dumps(tl_config(model.cfg), indent=2))
    torch.save(tl_state_dict(model), out / TL_WEIGHTS)
    return [out / TL_CONFIG, out / TL_WEIGHTS]


def save_safetensors(model, out_dir: str | Path, *, metadata: dict | None = None) -> list[Path]:
    """Write model.safetensors (our names) and config.json (ModelConfig + ``metadata``: run, step, spec)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / SAFETENSORS), metadata={"format": "pt"})
    config = {"model_config": asdict(model.cfg), **(metadata or {})}
    (out / CONFIG).write_text(json.dumps(config, indent=2, default=str))
    return [out / SAFETENSORS, out / CONFIG]


def load_safetensors(out_dir: str | Path):
    """Rebuild the model written by :func:`save_safetensors` (eval mode)."""
    from safetensors.torch import load_file

    from core.ml.model import ModelConfig, Transformer

    out = Path(out_dir)
    config = json.loads((out / CONFIG).read_text())
    model = Transformer(ModelConfig(**config["model_config"]))
    model.load_state_dict(load_file(str(out / SAFETENSORS)))
    return model.eval()

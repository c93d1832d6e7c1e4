"""The authors' training step, rebuilt op for op as a timing baseline (not a model to use).

    python benchmarks/reference_step.py [--epochs 10] [--device cuda]   # their whole command: data, eval, train, eval

As a script it runs what the reference's 10-epoch command does, so ``/usr/bin/time -v`` can compare
it back to back with ``circuitboard train --preset paper-polynomial --set steps=640``: build the
data, evaluate train and test accuracy with each 16k split as one batch (their evaluation at epoch
0), train ``--epochs`` epochs of 64 steps, evaluate again.

The reference (docs/paper.md) is the authors' code (facebookresearch/pal, src/cot), whose step we cannot
import here. This module performs the same operations in the same order, so that its step can be
timed in the same process as ours, against the same matmul peak:

- embeddings: token lookup, then the positional table added in place, then dropout 0.1;
- each block (their "pre_norm" quirk): ``x <- LN1(x)``, one fused QKV linear split with ``chunk``,
  ``scaled_dot_product_attention(is_causal=True)`` over every position, the output linear, then
  ``x + attn``; the MLP (linear, exact GELU, linear) on ``LN2`` of that, added back;
- final LayerNorm and unembedding at every position (no trimming);
- the loss: the chain-of-thought mask from a cumulative sum over ``targets == EoI``, then
  ``cross_entropy(logits[mask], targets[mask])``; Adam, ``zero_grad``, ``backward``, ``step``;
- batches from a ``DataLoader`` over the length-sorted training rows (default collation).

LayerNorms have a weight and no bias, as in their configuration; parameter count 414,720.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

EOI = 62


def after_eoi(targets: torch.Tensor) -> torch.Tensor:
    """Their loss mask, [B, W-1] bool: targets strictly after EoI, from a cumulative sum over EoI."""
    at_eoi = targets == EOI
    mask = at_eoi.cumsum(dim=1)
    mask[at_eoi] = 0
    return mask.to(dtype=torch.bool)


class _Norm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, None, 1e-5)


class _Block(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm_1, self.norm_2 = _Norm(d), _Norm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.output = nn.Linear(d, d, bias=False)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_1(x)  # [B, T, d], the stream itself normalised
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, T, d]
        B, T, d = q.shape
        q, k, v = (t.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d_head]
        out = x + self.output(z.transpose(1, 2).contiguous().view(B, T, d))  # [B, T, d]
        return out + self.fc2(F.gelu(self.fc1(self.norm_2(out))))


class ReferenceModel(nn.Module):
    """tokens [B, T] -> logits [B, T, d_vocab], every position."""

    def __init__(self, d_vocab: int = 64, n_ctx: int = 35, d_model: int = 128, n_layers: int = 2,
                 n_heads: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = dropout
        self.token_emb = nn.Embedding(d_vocab, d_model)
        self.pos_emb = nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.output_norm = _Norm(d_model)
        self.output = nn.Linear(d_model, d_vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.token_emb(tokens)  # [B, T, d]
        out[...] = out + self.pos_emb.weight[:tokens.shape[1]]  # in place, as theirs
        out = F.dropout(out, p=self.dropout, training=self.training)
        for block in self.blocks:
            out = block(out)
        return self.output(self.output_norm(out))  # [B, T, d_vocab]


class _Rows(Dataset):
    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i]


class ReferenceStep:
    """Their loop, one batch at a time: ``step()`` takes the next batch (cycling epochs) and trains."""

    def __init__(self, train_tokens: torch.Tensor, *, batch_size: int = 256, lr: float = 3e-4, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.model = ReferenceModel().to(self.device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.loader = DataLoader(_Rows(train_tokens), batch_size=batch_size)  # length-sorted, unshuffled
        self._batches = iter(self.loader)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _next_batch(self) -> torch.Tensor:
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            return next(self._batches)

    def step(self) -> float:
        sequence = self._next_batch().to(device=self.device, dtype=torch.long)  # [B, W], each batch moved as theirs
        inputs, targets = sequence[:, :-1], sequence[:, 1:]  # [B, W-1] each
        mask = after_eoi(targets)  # [B, W-1]
        logits = self.model(inputs)  # [B, W-1, d_vocab]
        loss = F.cross_entropy(logits[mask].view(-1, logits.shape[-1]), targets[mask].reshape(-1))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


@torch.no_grad()
def whole_split_accuracy(model: ReferenceModel, tokens: torch.Tensor) -> float:
    """Their evaluation: one forward pass over the whole split, a sequence right iff every target
    after EoI is."""
    model.eval()
    sequence = tokens.to(device=next(model.parameters()).device, dtype=torch.long)  # [N, W], all of it at once
    predictions = model(sequence[:, :-1]).argmax(dim=-1)  # [N, W-1]
    targets = sequence[:, 1:]
    wrong = (predictions != targets) & after_eoi(targets)
    model.train()
    return float((~wrong.any(dim=1)).float().mean())


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from core.presets import get_preset
    from core.problems import build_dataset
    from core.specs.overrides import apply_overrides

    parser = argparse.ArgumentParser(description="the reference's command, rebuilt: eval, train, eval")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    start = time.perf_counter()
    data = build_dataset(apply_overrides(get_preset("paper-polynomial"), {}).problem)
    train_tokens, test_tokens = (torch.from_numpy(data.split(name)[0]) for name in ("train", "test"))
    runner = ReferenceStep(train_tokens, device=args.device)
    evaluations = [(whole_split_accuracy(runner.model, train_tokens), whole_split_accuracy(runner.model, test_tokens))]
    steps = args.epochs * len(runner.loader)
    for _ in range(steps):
        runner.step()
    evaluations.append((whole_split_accuracy(runner.model, train_tokens), whole_split_accuracy(runner.model, test_tokens)))
    print(f"{steps} steps; accuracy (train, test) at epoch 0 {evaluations[0]}, at epoch {args.epochs} "
          f"{evaluations[1]}; {time.perf_counter() - start:.1f} s after imports")


if __name__ == "__main__":
    main()

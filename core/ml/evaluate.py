"""Evaluation: accuracy by length, teacher-forced and generated, in bounded chunks.

Teacher forcing (one forward pass, argmax at every position) is the paper's measure: a sequence is
correct iff every supervised target is right (``seq_acc``); ``tok_acc`` is the share of supervised
targets that are right. Generation decodes greedily from the prompt ``[problem] x_1..x_L [EoI]`` and
compares the model's own continuation with the truth: ``gen_acc`` (whole continuation right) and
``gen_answer_acc`` (the final state y_L right). Under greedy decoding ``gen_acc`` equals
``seq_acc`` on the same rows (the first wrong token is the same in both); ``gen_answer_acc`` is the
number that differs, and the one a chain-of-thought user cares about.

Rows are evaluated one length at a time in chunks of at most ``chunk`` rows, so memory stays flat
whatever the split size (the reference evaluated 16k rows as one batch: a 4.5 GB peak).

``teacher_forced(..., hooks_for=fn)`` evaluates under an intervention: before each chunk's forward
pass it calls ``fn(length, inputs)`` (inputs [n, w-1], one length per chunk) for the
``(hook_name, hook_fn)`` pairs to attach; they are removed after the pass (core.ml.interventions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from core.ml.hooks import HookFn, hooks, run_with_cache
from core.problems import supervised_mask


@dataclass
class Accuracy:
    """Per-length counts; ``as_metrics`` turns them into flat metric values."""

    seq_correct: dict[int, int] = field(default_factory=dict)
    tok_correct: dict[int, int] = field(default_factory=dict)
    tok_total: dict[int, int] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)

    def add(self, length: int, seq: int, tok: int, tok_total: int, rows: int) -> None:
        self.seq_correct[length] = self.seq_correct.get(length, 0) + seq
        self.tok_correct[length] = self.tok_correct.get(length, 0) + tok
        self.tok_total[length] = self.tok_total.get(length, 0) + tok_total
        self.rows[length] = self.rows.get(length, 0) + rows

    def seq_acc(self, length: int) -> float:
        return self.seq_correct[length] / self.rows[length]

    def mean_seq_acc(self, lo: int, hi: int) -> float:
        """Unweighted mean over lengths lo..hi that were evaluated (the paper's averages)."""
        values = [self.seq_acc(n) for n in self.rows if lo <= n <= hi]
        return float(np.mean(values)) if values else float("nan")


def _length_chunks(lengths: np.ndarray, chunk: int, limit: int | None = None):
    """Yield (length, row indices) with at most ``chunk`` rows, at most ``limit`` rows per length."""
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)[:limit]
        for start in range(0, len(rows), chunk):
            yield int(length), rows[start:start + chunk]


def forward_width(length: int, width: int, loss_on: str) -> int:
    """Positions a forward pass needs: the full row for 'all', up to the EOS after y_L for 'cot'."""
    return width if loss_on == "all" else min(width, 2 * length + 3)


HooksFor = Callable[[int, torch.Tensor], list[tuple[str, HookFn]]]  # (length, inputs [n, T]) -> hooks


@torch.no_grad()
def teacher_forced(model, tokens: np.ndarray, lengths: np.ndarray, *, loss_on: str,
                   device: torch.device, per_length: int | None = None, chunk: int = 256,
                   hooks_for: HooksFor | None = None) -> Accuracy:
    """Accuracy of one forward pass per chunk; tokens [N, W] uint8, lengths [N]; at most
    ``per_length`` rows of each length (the first ones: rows are already shuffled within a length).
    ``hooks_for``: an intervention, attached for each chunk's pass (module docstring)."""
    model.eval()
    acc = Accuracy()
    width = tokens.shape[1]
    for length, rows in _length_chunks(lengths, chunk, limit=per_length):
        w = forward_width(length, width, loss_on)
        batch = torch.from_numpy(tokens[rows, :w]).to(device=device, dtype=torch.long)  # [n, w]
        mask = torch.from_numpy(supervised_mask(lengths[rows], width, loss_on)[:, :w - 1]).to(device)
        inputs = batch[:, :-1]  # [n, w-1]
        if hooks_for is None:
            first = length + 1  # target j predicts token j+1: the first supervised one is y_1's, at EoI
            pred = model(inputs, first_output=first).argmax(dim=-1)  # [n, w-1-first]
            targets, mask = batch[:, 1 + first:], mask[:, first:]  # [n, w-1-first], nothing scored dropped
        else:  # an intervention may read or write any position: the whole pass
            with hooks(model, hooks_for(length, inputs)):
                pred = model(inputs).argmax(dim=-1)  # [n, w-1]
            targets = batch[:, 1:]
        right = (pred == targets) | ~mask  # unsupervised targets count as right
        acc.add(length, int(right.all(dim=1).sum()), int(((pred == targets) & mask).sum()),
                int(mask.sum()), len(rows))
    return acc


@torch.no_grad()
def generated(model, tokens: np.ndarray, lengths: np.ndarray, *, loss_on: str,
              device: torch.device, per_length: int = 64, chunk: int = 256) -> dict[str, float]:
    """Greedy decoding from the prompt on up to ``per_length`` rows per length.

    Rows of every length share a chunk (sorted by length), so there is one forward pass per
    position for the whole chunk rather than one per position and length: at each position a row
    still in its prompt keeps its true next token, and a row past its EoI takes the model's. A
    row is scored on its own width (``forward_width``); what a shorter row decodes after it is
    never read, and causal attention keeps it from reaching back."""
    model.eval()
    width = tokens.shape[1]
    chosen = np.concatenate([np.flatnonzero(lengths == length)[:per_length] for length in np.unique(lengths)])  # by length
    seq_right = answer_right = 0
    for start in range(0, len(chosen), chunk):
        rows = chosen[start:start + chunk]
        n = torch.from_numpy(lengths[rows].astype(np.int64)).to(device)  # [c]
        own_width = torch.tensor([forward_width(int(length), width, loss_on) for length in lengths[rows]], device=device)
        w = int(own_width.max())
        truth = torch.from_numpy(tokens[rows, :w]).to(device=device, dtype=torch.long)  # [c, w]
        out = truth.clone()
        eoi = n + 1  # [c], the EoI position
        first = int(eoi.min())
        cache = model.new_cache()
        new = out[:, :first + 1]  # [c, first + 1]: the prompt every row shares, then one token a step
        for position in range(first, w - 1):  # predict token position+1 from out[:, :position+1]
            logits = model(new, first_output=new.shape[1] - 1, cache=cache)[:, -1]  # [c, d_vocab]
            decoding = eoi <= position  # [c]: rows past their prompt
            out[:, position + 1] = torch.where(decoding, logits.argmax(dim=-1), truth[:, position + 1])
            new = out[:, position + 1:position + 2]  # [c, 1]
        scored = torch.arange(w, device=device) < own_width[:, None]  # [c, w]
        seq_right += int(((out == truth) | ~scored).all(dim=1).sum())
        answer = (2 * n + 1)[:, None]  # [c, 1], y_L's position
        answer_right += int((out.gather(1, answer) == truth.gather(1, answer)).sum())
    return {"gen_acc": seq_right / len(chosen), "gen_answer_acc": answer_right / len(chosen)}


@torch.no_grad()
def attention_patterns(model, tokens: np.ndarray, *, device: torch.device, chunk: int = 512) -> np.ndarray:
    """Every layer's hook_pattern on tokens [N, W] -> float32 [N, n_layers, n_heads, W, W]."""
    model.eval()
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    out = []
    for start in range(0, len(tokens), chunk):
        batch = torch.from_numpy(tokens[start:start + chunk]).to(device=device, dtype=torch.long)
        _, cache = run_with_cache(model, batch, names)
        out.append(torch.stack([cache[n] for n in names], dim=1).float().cpu().numpy())  # [n, layers, H, W, W]
    return np.concatenate(out)

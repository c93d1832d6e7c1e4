"""Packed training: M independent copies of the solo model trained in one step.

A :class:`Pack` holds M solo :class:`~core.ml.model.Transformer` s of one shape (each built and
initialised exactly as its solo run builds it, from its own seed) as one set of tensors: every
parameter gains a leading model axis ``M`` (``torch.func.stack_module_state``), and the solo
model's own ``forward`` runs once over that axis (``torch.func.functional_call`` under
``torch.func.vmap``). The solo model stays the reference; nothing here re-implements it. The
pack runs the model's explicit attention path (the same function as the fused one, to float
rounding), since vmap has no batching rule for the fused CPU kernel and would loop over members.

One step trains all members:

- Inputs are per member: tokens [M, B, W] and the target mask [M, B, W-1] (each member its own
  batches, as its solo run draws them: ``train.batch_rows`` with its own seed).
- Each member's loss is its own mean cross-entropy over its supervised targets, exactly the solo
  ``train_step``'s loss. The pack backpropagates the SUM of the M losses, never the mean: member i's
  parameters only reach member i's loss, so the gradient on member i's slice is exactly the
  gradient of its solo loss (dividing by M would shrink every member's gradient M times).
- Adam (or AdamW) runs on the stacked tensors with per-member ``lr``, ``betas`` and
  ``weight_decay`` (tensors [M], broadcast over each parameter's own axes): the same update as
  ``torch.optim.Adam`` / ``AdamW`` with the trainer's settings (``train.make_optimizer``: eps 1e-8,
  no clipping, no amsgrad), to float rounding.

:meth:`Pack.member_state_dict` gives member i's weights in the solo layout, so the solo evaluation,
snapshot and checkpoint code reads them unchanged (``Transformer.load_state_dict``).

This first version supports dropout 0 only (a packed dropout mask cannot reproduce the solo run's
draws) and ``qk_scale`` 1, and every member must train the same set of parameters; it refuses
anything else with an error naming the setting.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from core.ml.model import Transformer

OPTIMIZERS = ("adam", "adamw")


def per_member(value, m: int, name: str) -> torch.Tensor:
    """A float or M floats -> float64 tensor [M] (the optimizer's per-member coefficients)."""
    values = [float(value)] * m if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != m:
        raise ValueError(f"{name}: expected one value or {m} (one per member), got {len(values)}")
    return torch.tensor(values, dtype=torch.float64)  # [M]


def member_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One member's mean cross-entropy over its supervised targets (the solo ``train_step`` loss).

    logits [B, T, V], targets [B, T] (int), mask [B, T] (bool) -> scalar."""
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # [B*T]
    weight = mask.flatten().to(ce.dtype)  # [B*T]
    return (ce * weight).sum() / weight.sum()


class Pack:
    """M solo models of one shape, stacked on a leading model axis and trained in one step.

    ``models``: the M solo models (their weights are copied, the models themselves are not used
    again). ``lr``, ``weight_decay``, ``beta1``, ``beta2``: one value for all or one per member.
    ``optimizer``: ``"adam"`` (L2 decay added to the gradient) or ``"adamw"`` (decoupled decay), for
    the whole pack. ``lr`` may be changed between steps (``pack.lr = ...``, a float or M floats).
    """

    def __init__(self, models: Sequence[Transformer], *, lr=1e-3, weight_decay=0.0, beta1=0.9,
                 beta2=0.999, eps: float = 1e-8, optimizer: str = "adam") -> None:
        models = list(models)
        if not models:
            raise ValueError("a pack needs at least one model")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        cfg = models[0].cfg
        for i, model in enumerate(models):
            if model.cfg != cfg:
                raise ValueError(f"member {i}: its ModelConfig differs from member 0's; a pack holds one shape")
            if model.cfg.dropout != 0.0:
                raise ValueError(f"member {i}: dropout={model.cfg.dropout}; packed training supports dropout 0 only")
            if model.qk_scale != 1.0:
                raise ValueError(f"member {i}: qk_scale={model.qk_scale}; packed training supports qk_scale 1 only")
        trainable = [tuple(n for n, p in m.named_parameters() if p.requires_grad) for m in models]
        if any(t != trainable[0] for t in trainable):
            raise ValueError("trainable: every member of a pack must train the same parameters")
        self.m = len(models)
        self.cfg = cfg
        self.optimizer = optimizer
        self.eps = float(eps)
        self.trainable = trainable[0]
        self.state_keys = list(models[0].state_dict().keys())  # the solo layout, persistent buffers included
        params, buffers = stack_module_state(models)  # name -> [M, *solo shape]
        self.params = {n: p.detach().clone().requires_grad_(n in self.trainable) for n, p in params.items()}
        self.buffers = {n: b.detach().clone() for n, b in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")  # the code to run; its weights come from self.params
        self.base.train()
        self.base.explicit = True  # the materialised attention: vmap has no batching rule for the fused CPU kernel
        self.lr = lr
        self.weight_decay = per_member(weight_decay, self.m, "weight_decay")  # [M]
        self.beta1 = per_member(beta1, self.m, "beta1")  # [M]
        self.beta2 = per_member(beta2, self.m, "beta2")  # [M]
        self.steps = 0
        self.exp_avg = {n: torch.zeros_like(self.params[n]) for n in self.trainable}  # [M, *shape]
        self.exp_avg_sq = {n: torch.zeros_like(self.params[n]) for n in self.trainable}  # [M, *shape]

    @property
    def lr(self) -> torch.Tensor:
        return self._lr  # [M] float64

    @lr.setter
    def lr(self, value) -> None:
        self._lr = per_member(value, self.m, "lr")  # [M]

    # ------------------------------------------------------------------ forward and loss

    def _check(self, tokens: torch.Tensor, name: str = "tokens") -> None:
        if tokens.dim() != 3 or tokens.shape[0] != self.m:
            raise ValueError(f"{name}: expected [M={self.m}, batch, seq], got {list(tokens.shape)}")

    def logits(self, tokens: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        """tokens [M, B, T] -> logits [M, B, T, d_vocab]: member i's model on tokens[i]."""
        self._check(tokens)

        def one(p, b, x):  # one member: its weights, buffers and tokens [B, T]
            return functional_call(self.base, (p, b), (x,))  # [B, T, d_vocab]

        return vmap(one)(self.params if params is None else params, self.buffers, tokens)

    def losses(self, tokens: torch.Tensor, mask: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        """tokens [M, B, W], target mask [M, B, W-1] (bool) -> each member's mean loss [M]."""
        self._check(tokens)
        if mask.shape != (*tokens.shape[:2], tokens.shape[2] - 1):
            raise ValueError(f"mask: expected {[*tokens.shape[:2], tokens.shape[2] - 1]}, got {list(mask.shape)}")
        logits = self.logits(tokens[:, :, :-1], params)  # [M, B, W-1, d_vocab]
        return vmap(member_loss)(logits, tokens[:, :, 1:], mask)  # [M]

    # ------------------------------------------------------------------ the step

    def step(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One forward, backward and Adam step of every member; returns the losses [M] (detached)."""
        self.zero_grad()
        losses = self.losses(tokens, mask)  # [M]
        losses.sum().backward()  # the sum, never the mean: each member keeps its own gradient
        self.adam_step()
        return losses.detach()

    def zero_grad(self) -> None:
        for n in self.trainable:
            self.params[n].grad = None

    @torch.no_grad()
    def adam_step(self) -> None:
        """Adam / AdamW on every trainable stacked tensor, per-member coefficients on axis 0.

        The update of ``torch.optim.Adam`` (single-tensor form): g += wd * p (adam) or
        p *= 1 - lr * wd (adamw); m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""
        self.steps += 1
        t = self.steps
        bc1 = 1 - self.beta1 ** t  # [M]
        bc2_sqrt = (1 - self.beta2 ** t).sqrt()  # [M]
        step_size = self.lr / bc1  # [M]
        for n in self.trainable:
            p, g = self.params[n], self.params[n].grad  # [M, *shape]
            if g is None:
                continue
            shape = (self.m,) + (1,) * (p.dim() - 1)  # broadcasts a [M] coefficient over one member's axes

            def c(x: torch.Tensor) -> torch.Tensor:
                return x.to(device=p.device, dtype=p.dtype).view(shape)  # [M, 1, ...]

            if self.optimizer == "adam":
                g = g + c(self.weight_decay) * p  # [M, *shape]
            else:
                p.mul_(1 - c(self.lr * self.weight_decay))
            m, v = self.exp_avg[n], self.exp_avg_sq[n]  # [M, *shape]
            m.lerp_(g, c(1 - self.beta1))
            v.mul_(c(self.beta2)).add_(c(1 - self.beta2) * g * g)
            denom = v.sqrt().div_(c(bc2_sqrt)).add_(self.eps)  # [M, *shape]
            p.sub_(c(step_size) * m / denom)

    # ------------------------------------------------------------------ members out

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's weights in the solo model's layout (``Transformer.state_dict`` keys): copies."""
        if not 0 <= i < self.m:
            raise IndexError(f"member {i}: the pack has members 0..{self.m - 1}")
        stacked = {**self.params, **self.buffers}
        return {k: stacked[k][i].detach().clone() for k in self.state_keys}

    def member(self, i: int) -> Transformer:
        """Member i as a solo model (a fresh Transformer holding its weights)."""
        model = Transformer(self.cfg).to(next(iter(self.params.values())).device)
        model.load_state_dict(self.member_state_dict(i))
        for name, p in model.named_parameters():
            p.requires_grad_(name in self.trainable)
        return model

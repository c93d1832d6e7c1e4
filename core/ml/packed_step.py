"""The packed step: Adam over the pack's flat buffer, and one forward-backward-update, eager or
replayed from a CUDA graph.

:class:`PackedAdam` is ``torch.optim.Adam`` (and ``AdamW``) in the single-tensor form the solo run
uses on a CPU, applied to the pack's one ``[M, P]`` buffer with hyper-parameters per member
(``[M, 1]`` columns): whatever the number of parameters, an update is a handful of whole-buffer
operations, the optimizer equivalent of a fused kernel, and it never synchronises with the host
(the hyper-parameters reach the device by one asynchronous copy a step). Its scalars are computed in
float64 on the host exactly as the solo optimizer computes them, so given the same gradients a
member's update equals the solo one (a test checks it against ``torch.optim.Adam``).

:class:`PackedStep` is the whole step. On a CPU, and on CUDA by default, it runs eagerly. With
``cuda_graphs`` on a CUDA device it captures the step once per input shape (the batch width and
first scored position vary with the lengths in a batch, so there are a few graphs, sharing one
memory pool) and replays it: one launch instead of hundreds, which is what a step of a small model
costs on a GPU. TF32 is off unless asked for (:func:`set_tf32`): packed and solo runs then compute
in the same fp32.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from core.ml.packed import PackedTransformer

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the solo run uses
EPS = 1e-8


class PackedAdam:
    """torch.optim.Adam / AdamW, single-tensor algorithm, over the pack's flat [M, P] buffer.

    Per member: learning rate (set each step), weight decay, coupled (Adam) or decoupled (AdamW)
    decay, and Adam's step count. Per entry: ``trains`` [M, P], False for a member's frozen
    parameters, which keep their values and zero moments, as the solo optimizer (which never sees
    them) leaves them. The update is a few whole-buffer operations whatever the number of
    parameters; the hyper-parameters live in one device tensor refreshed by an asynchronous copy."""

    def __init__(self, packed: PackedTransformer, trains: torch.Tensor, weight_decay: list[float],
                 decoupled: list[bool], steps: list[int]) -> None:
        self.flat, self.grad = packed.flat, packed.flat_grad  # [M, P]
        self.trains = trains  # [M, P] bool
        self.exp_avg = torch.zeros_like(self.flat)  # [M, P]
        self.exp_avg_sq = torch.zeros_like(self.flat)  # [M, P]
        self.weight_decay, self.decoupled, self.steps = list(weight_decay), list(decoupled), list(steps)
        self.hyper = torch.zeros(4, len(steps), 1, device=self.flat.device)  # step size, sqrt(bc2), l2, decay

    def set_lr(self, lrs: list[float]) -> None:
        """Advance every member's step count and load this step's hyper-parameters (float64 on the
        host, as the solo optimizer computes them, then one copy to the device)."""
        self.steps = [s + 1 for s in self.steps]
        rows = []
        for lr, wd, decoupled, step in zip(lrs, self.weight_decay, self.decoupled, self.steps):
            step_size = lr / (1 - BETAS[0] ** step)
            bc2_sqrt = (1 - BETAS[1] ** step) ** 0.5
            rows.append((step_size, bc2_sqrt, 0.0 if decoupled else wd, 1 - lr * wd if decoupled else 1.0))
        host = torch.tensor(rows, dtype=torch.float64).T.to(torch.float32).contiguous()  # [4, M]
        self.hyper.copy_(host.view(4, -1, 1), non_blocking=True)  # from pageable memory: staged, no sync

    def step(self) -> None:
        step_size, bc2_sqrt, l2, decay = self.hyper  # each [M, 1]
        grad = torch.where(self.trains, self.grad + l2 * self.flat, 0.0)  # [M, P]
        self.exp_avg.lerp_(grad, 1 - BETAS[0])
        self.exp_avg_sq.mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
        denom = (self.exp_avg_sq.sqrt() / bc2_sqrt).add_(EPS)
        updated = self.flat * decay - step_size * (self.exp_avg / denom)  # [M, P]
        self.flat.copy_(torch.where(self.trains, updated, self.flat))

    def keep(self, rows: list[int]) -> None:
        """Keep only these members (in this order), after the pack shrinks."""
        self.trains, self.exp_avg, self.exp_avg_sq = (t[rows] for t in (self.trains, self.exp_avg, self.exp_avg_sq))
        self.weight_decay = [self.weight_decay[i] for i in rows]
        self.decoupled = [self.decoupled[i] for i in rows]
        self.steps = [self.steps[i] for i in rows]
        self.hyper = torch.zeros(4, len(rows), 1, device=self.flat.device)


# ------------------------------------------------------------------------------------------- step


def member_losses(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits [M, B, T, V], targets and mask [M, B, T] -> [M]: each member's mean cross-entropy over
    its scored targets (the solo loss; a member with none scores 0, with a zero gradient)."""
    M, B, T, V = logits.shape
    ce = F.cross_entropy(logits.reshape(M * B * T, V), targets.reshape(-1), reduction="none").view(M, B, T)
    return torch.where(mask, ce, 0.0).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)  # [M]


class PackedStep:
    """One training step of the whole pack: forward, the summed loss, backward, optimizer.

    ``step(tokens [M, B, W], mask [M, B, W-1], scale [M, B, W-1, d] | None, first)`` returns the
    members' losses [M] (on the device, not synchronised). Eager everywhere; on CUDA with
    ``cuda_graphs`` the step is captured once per (width, first, dropout) shape and replayed from
    static buffers. Capture needs warm-up passes, which would train: the state is copied before
    and restored after, so the first replay is the first real step."""

    def __init__(self, packed: PackedTransformer, adam: PackedAdam, *, cuda_graphs: bool = False) -> None:
        self.packed, self.adam = packed, adam
        self.cuda_graphs = cuda_graphs and packed.flat.device.type == "cuda"
        self.graphs: dict[tuple, tuple] = {}
        self.pool = None

    def eager(self, tokens, mask, scale, first: int) -> torch.Tensor:
        logits = self.packed(tokens[:, :, :-1], first_output=first, dropout_scale=scale)  # [M, B, W-1-first, V]
        losses = member_losses(logits, tokens[:, :, 1 + first:], mask[:, :, first:])  # [M]
        self.packed.flat_grad.zero_()
        with warnings.catch_warnings():  # each gradient is a row-strided view of flat_grad, and autograd
            warnings.filterwarnings("ignore", message="grad and param do not obey")  # says so: harmless
            losses.sum().backward()  # the sum of the members' own means: each member's solo gradient
        self.adam.step()
        return losses.detach()

    def __call__(self, tokens, mask, scale, first: int) -> torch.Tensor:
        if not self.cuda_graphs:
            return self.eager(tokens, mask, scale, first)
        key = (tokens.shape, first, scale is None)
        if key not in self.graphs:
            self.graphs[key] = self._capture(tokens, mask, scale, first)
        graph, static_in, losses = self.graphs[key]
        for buffer, value in zip(static_in, (tokens, mask, scale)):
            if value is not None:
                buffer.copy_(value, non_blocking=True)
        graph.replay()
        return losses.clone()

    def _capture(self, tokens, mask, scale, first: int):
        state = [t.clone() for t in (self.adam.flat, self.adam.exp_avg, self.adam.exp_avg_sq)]
        static_in = [None if t is None else t.clone() for t in (tokens, mask, scale)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.eager(*static_in, first)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # One pool for every shape's graph: nothing a graph allocates outlives its replay except its
        # losses, which stay referenced (so never reused); parameters and inputs live outside it.
        with torch.cuda.graph(graph, pool=self.pool):
            losses = self.eager(*static_in, first)
        self.pool = graph.pool()
        for live, saved in zip((self.adam.flat, self.adam.exp_avg, self.adam.exp_avg_sq), state):
            live.copy_(saved)
        return graph, static_in, losses


def set_tf32(enabled: bool) -> str:
    """Allow TF32 matmuls on CUDA (or not: the default, for fidelity); returns the previous setting."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    return before



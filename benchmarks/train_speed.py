"""Training speed on the paper's configuration: steps/s, tokens/s, GFLOP/s against a matmul peak.

    python benchmarks/train_speed.py [--preset paper-polynomial] [--steps 60] [--threads N] [--device cpu]
    python benchmarks/train_speed.py --reference      # and the authors' step (reference_step.py), interleaved

Prints one figure per line. Achieved GFLOP/s counts 6 x parameters x tokens per step (the usual
forward + backward estimate; 21.7 GFLOP for the paper's batch of 256 x 34 tokens) and is compared
with two fp32 matmul peaks measured in the same process, on the same threads and device:
a large square matmul (the machine's peak) and the GEMM shapes this model's step actually runs.
Peak RSS is the process's maximum resident set size (the whole process, torch included).

``--reference`` also times an op-for-op rebuild of the authors' step (benchmarks/reference_step.py,
paper configuration only) in the same process: blocks of ten steps of each, alternating, so that a
drift in the machine's speed hits both; the figures are the medians over blocks, and both are
compared with the same peak (the best of the square matmul measured before and after).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.reference_step import ReferenceStep  # noqa: E402

from core.ml.train import batch_rows, build_model, make_optimizer, resolve_device, train_step  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.problems import build_dataset, supervised_mask  # noqa: E402
from core.specs.overrides import apply_overrides, parse_set  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds that ``fn()`` takes, synchronised on CUDA."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def matmul_gflops(shapes: list[tuple[int, int, int]], device: torch.device, repeats: int = 20) -> float:
    """Best-of-3 throughput of running every (m, k, n) matmul ``repeats`` times, in GFLOP/s."""
    pairs = [(torch.randn(m, k, device=device), torch.randn(k, n, device=device)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes) * repeats
    def run() -> None:
        for _ in range(repeats):
            for a, b in pairs:
                a @ b  # each product dropped at once, as a step's are

    best = min(timed(run, device) for _ in range(3))
    return flops / best / 1e9


def model_gemm_shapes(tokens: int, d_model: int, d_mlp: int, d_vocab: int, n_layers: int) -> list[tuple[int, int, int]]:
    """The (m, k, n) matmuls of one forward + backward step of the model (attention scores excluded)."""
    forward = [(tokens, d_model, 3 * d_model), (tokens, d_model, d_model),
               (tokens, d_model, d_mlp), (tokens, d_mlp, d_model)] * n_layers + [(tokens, d_model, d_vocab)]
    shapes = []
    for m, k, n in forward:
        shapes += [(m, k, n), (m, n, k), (k, m, n)]  # y = xW; dx = dy W^T; dW = x^T dy
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper-polynomial")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=60, help="timed steps (after 5 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference", action="store_true", help="also time the authors' step, interleaved, on the same device")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = apply_overrides(get_preset(args.preset), {**parse_set(args.set), "device": args.device})
    device = resolve_device(spec.train.device)
    data = build_dataset(spec.problem)
    model = build_model(spec, device)
    optimizer = make_optimizer(model.parameters(), spec.train)
    tokens_all = torch.from_numpy(data.train_tokens).to(device=device, dtype=torch.long)
    mask_all = torch.from_numpy(supervised_mask(data.train_lengths, data.width, spec.train.loss_on)).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    B, T = spec.train.batch_size, data.width - 1
    flops_per_step = 6 * n_params * B * T

    lengths_all = torch.from_numpy(data.train_lengths.astype("int64")).to(device)

    def step(i: int) -> None:
        rows = batch_rows(i, len(tokens_all), B, shuffle=spec.train.shuffle, seed=spec.train.seed)
        train_step(model, optimizer, tokens_all[rows], mask_all[rows], lengths_all[rows], loss_on=spec.train.loss_on)

    model.train()
    for i in range(1, 6):
        step(i)
    square_before = matmul_gflops([(2048, 2048, 2048)], device, repeats=5)
    reference = ReferenceStep(tokens_all.cpu(), device=device) if args.reference else None
    if reference is not None:
        for _ in range(5):
            reference.step()
    ours, theirs = [], []
    block, done = 10, 0
    while done < args.steps:
        n = min(block, args.steps - done)
        ours.append(timed(lambda: [step(6 + done + j) for j in range(n)], device) / n)
        if reference is not None:
            theirs.append(timed(lambda: [reference.step() for _ in range(n)], device) / n)
        done += n
    seconds = statistics.median(ours)

    square = max(square_before, matmul_gflops([(2048, 2048, 2048)], device, repeats=5))
    shaped = matmul_gflops(model_gemm_shapes(B * T, spec.model.d_model, spec.model.d_mlp, 64, spec.model.n_layers), device)
    achieved = flops_per_step / seconds / 1e9
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"device                 {device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else f"device                 {torch.cuda.get_device_name(device)}")
    print(f"preset                 {args.preset} (batch {B} x {T} tokens, {n_params:,} parameters)")
    print(f"step                   {seconds * 1e3:.1f} ms (median of blocks of 10, {args.steps} timed steps)")
    print(f"steps/s                {1 / seconds:.2f}")
    print(f"tokens/s               {B * T / seconds:,.0f}")
    print(f"GFLOP per step         {flops_per_step / 1e9:.1f} (6 x parameters x tokens)")
    print(f"achieved GFLOP/s       {achieved:.1f}")
    print(f"matmul peak, square    {square:.1f} GFLOP/s (2048^3 fp32) -> step at {achieved / square:.0%}")
    print(f"matmul peak, model     {shaped:.1f} GFLOP/s (this step's GEMM shapes) -> step at {achieved / shaped:.0%}")
    if reference is not None:
        ref_seconds = statistics.median(theirs)
        ref_achieved = 6 * reference.n_params() * B * T / ref_seconds / 1e9
        print(f"reference step         {ref_seconds * 1e3:.1f} ms (authors' step rebuilt op for op, same blocks interleaved)")
        print(f"reference GFLOP/s      {ref_achieved:.1f} -> {ref_achieved / square:.0%} of the square peak")
        print(f"step ratio             {seconds / ref_seconds:.2f} (ours / reference; {ref_seconds / seconds:.2f}x faster)")
    print(f"peak RSS               {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()

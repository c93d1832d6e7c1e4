"""Packed training speed: M seeds of the paper's run in one step, against the same M runs solo.

    python benchmarks/pack_speed.py [--d-model 8 16 32 64 128] [--pack 1 2 4 8] [--steps 20] [--device cpu] [--json]

For each d_model (the paper's configuration with only d_model changed, d_mlp = 4 d_model) and each
pack size M, members are seeds 0..M-1. The pack (core/ml/packed_train.py) and the M solo runs (the
solo trainer's own step, ``train_step``, each with its own global random state) are timed in the same
process, in alternating blocks of 5 steps after 3 warm-up steps, so a drift in the machine's speed hits
both; figures are medians over blocks. Printed per (d_model, M):

- model-steps/s packed and solo, and their ratio (how many times faster the pack trains the M runs);
- achieved GFLOP/s (6 x parameters x tokens per model-step, as benchmarks/train_speed.py counts)
  and its share of a 2048^3 fp32 matmul measured in the same run (the best of before and after);
- peak memory: the process's peak RSS on a CPU, the pack's peak allocation on CUDA; on CUDA, with
  ``--largest``, the largest pack that fits (doubling until out of memory);
- the largest |packed - solo| difference of a loss and of a parameter after the timed steps (the
  pack and the solo runs have trained the same steps on the same batches, masks and seeds);
- projected wall time of 100 seeds x 64,000 steps in packs of M, and of the 1,680-cell scaling grid
  (L_max 4..31 x d_model 4..63) if every cell cost what a member of this pack costs.

``--json`` prints one JSON object a line instead: ``solo_step_s`` is one solo run's step,
``packed_step_s`` one step of the whole pack, ``ratio`` = M x solo_step_s / packed_step_s, and
``max_abs_diff`` the larger of ``max_loss_diff`` and ``max_param_diff``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.train_speed import matmul_gflops, sync, timed  # noqa: E402

from core.ml.packed_train import Pack, member_from_spec  # noqa: E402
from core.ml.packed_step import set_tf32  # noqa: E402
from core.ml.train import batch_rows, build_model, lr_at, make_optimizer, resolve_device, train_step  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.problems import build_dataset, supervised_mask  # noqa: E402
from core.specs.overrides import apply_overrides, parse_set  # noqa: E402

SEEDS, STEPS, GRID_CELLS = 100, 64_000, 1_680
BLOCK, WARMUP = 5, 3


class Solo:
    """One solo run stepped by the solo trainer's ``train_step``, with its own global random state."""

    def __init__(self, spec, data, device) -> None:
        self.spec, t = spec, spec.train
        self.model = build_model(spec, device)
        self.rng = torch.get_rng_state()
        self.optimizer = make_optimizer(self.model.parameters(), t)
        self.tokens = torch.from_numpy(data.train_tokens).to(device=device, dtype=torch.long)
        self.mask = torch.from_numpy(supervised_mask(data.train_lengths, data.width, t.loss_on)).to(device)
        self.lengths = torch.from_numpy(data.train_lengths.astype(np.int64)).to(device)
        self.step, self.loss = 0, float("nan")
        self.model.train()

    def steps(self, n: int) -> None:
        torch.set_rng_state(self.rng)
        t = self.spec.train
        for _ in range(n):
            self.step += 1
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(self.step, t)
            rows = batch_rows(self.step, len(self.tokens), t.batch_size, shuffle=t.shuffle, seed=t.seed)
            loss = train_step(self.model, self.optimizer, self.tokens[rows], self.mask[rows], self.lengths[rows],
                              loss_on=t.loss_on)
        self.loss = loss.detach()
        self.rng = torch.get_rng_state()


def measure(base: dict, d_model: int, M: int, steps: int, device: torch.device, data_cache: dict, *,
            attention: str = "fused", cuda_graphs: bool = False) -> dict:
    specs = [apply_overrides(base, {"d_model": d_model, "d_mlp": 4 * d_model, "seed": s, "device": str(device)})
             for s in range(M)]
    key = specs[0].problem
    if key not in data_cache:
        data_cache[key] = build_dataset(key)
    data = data_cache[key]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rng = torch.get_rng_state()
    pack = Pack([member_from_spec(s, index=i, data=data) for i, s in enumerate(specs)], attention=attention,
                cuda_graphs=cuda_graphs)
    solos = [Solo(s, data, device) for s in specs]
    torch.set_rng_state(rng)
    packed_loss = None

    def pack_block(n: int) -> None:
        nonlocal packed_loss
        for _ in range(n):
            packed_loss = pack.tick()

    pack_block(WARMUP)
    for solo in solos:
        solo.steps(WARMUP)
    packed_times, solo_times = [], []
    done = 0
    while done < steps:
        n = min(BLOCK, steps - done)
        packed_times.append(timed(lambda: pack_block(n), device) / n)
        solo_times.append(timed(lambda: [solo.steps(n) for solo in solos], device) / (n * M))
        done += n
    sync(device)
    packed_s, solo_s = statistics.median(packed_times), statistics.median(solo_times)
    loss_diff = max(abs(float(packed_loss[i]) - float(solo.loss)) for i, solo in enumerate(solos))
    param_diff = max(float((v - solo.model.state_dict()[k]).abs().max())
                     for i, solo in enumerate(solos) for k, v in pack.packed.member_state_dict(i).items())
    n_params = solos[0].model.n_params()
    tokens = specs[0].train.batch_size * (data.width - 1)
    flops = 6 * n_params * tokens  # per model-step
    peak_mb = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    per_model = packed_s / M
    return {
        "d_model": d_model, "pack": M, "steps": steps, "params": n_params, "attention": attention,
        "cuda_graphs": pack.stepper.cuda_graphs,
        "solo_step_s": solo_s, "packed_step_s": packed_s,
        "solo_model_steps_per_s": 1 / solo_s, "packed_model_steps_per_s": M / packed_s,
        "ratio": solo_s * M / packed_s,
        "solo_gflops": flops / solo_s / 1e9, "packed_gflops": flops * M / packed_s / 1e9,
        "peak_mem_mb": peak_mb,
        "max_loss_diff": loss_diff, "max_param_diff": param_diff, "max_abs_diff": max(loss_diff, param_diff),
        "hours_100_seeds": math.ceil(SEEDS / M) * STEPS * packed_s / 3600,
        "hours_100_seeds_solo": SEEDS * STEPS * solo_s / 3600,
        "hours_grid": GRID_CELLS * STEPS * per_model / 3600,
    }


def largest_pack(base: dict, d_model: int, device: torch.device, data_cache: dict, limit: int) -> int:
    """CUDA only: the largest power-of-two pack (up to ``limit``) whose step runs without running out
    of memory."""
    best, M = 0, 1
    while M <= limit:
        try:
            measure(base, d_model, M, 1, device, data_cache, cuda_graphs=True)
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        best, M = M, 2 * M
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--pack", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--preset", default="paper-polynomial")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (off: fp32)")
    parser.add_argument("--attention", choices=["fused", "explicit"], default="fused", help="see core/ml/packed.py")
    parser.add_argument("--cuda-graphs", action="store_true", help="CUDA: replay the pack's step from a CUDA graph")
    parser.add_argument("--largest", type=int, default=0, metavar="LIMIT",
                        help="CUDA: also find the largest pack up to LIMIT that fits in memory")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if any(m < 1 for m in args.pack) or any(d < 2 for d in args.d_model) or args.steps < 1:
        parser.error("--pack >= 1, --d-model >= 2 and --steps >= 1")
    device = resolve_device(args.device)
    set_tf32(args.tf32)
    base = {**get_preset(args.preset), **parse_set(args.set)}
    name = (f"{device} ({torch.get_num_threads()} threads)" if device.type == "cpu"
            else torch.cuda.get_device_name(device))
    square_before = matmul_gflops([(2048, 2048, 2048)], device, repeats=5)
    rows, data_cache = [], {}
    for d_model in args.d_model:
        for M in args.pack:
            rows.append(measure(base, d_model, M, args.steps, device, data_cache, attention=args.attention,
                                cuda_graphs=args.cuda_graphs))
            if not args.json:
                print_row(rows[-1])
        if args.largest and device.type == "cuda":
            fits = largest_pack(base, d_model, device, data_cache, args.largest)
            for row in rows:
                if row["d_model"] == d_model:
                    row["largest_pack"] = fits
            if not args.json:
                print(f"  d_model {d_model}: largest pack that fits {fits} (limit {args.largest})")
    square = max(square_before, matmul_gflops([(2048, 2048, 2048)], device, repeats=5))
    for row in rows:
        row.update(device=name, torch=torch.__version__, tf32=args.tf32, peak_gflops=square,
                   packed_share=row["packed_gflops"] / square, solo_share=row["solo_gflops"] / square)
        if args.json:
            print(json.dumps(row))
    if not args.json:
        print(f"device {name}, torch {torch.__version__}, matmul peak {square:.1f} GFLOP/s (2048^3 fp32)")
        for row in rows:
            print(f"  d_model {row['d_model']:4d} pack {row['pack']:3d}: "
                  f"packed at {row['packed_share']:.0%} of the peak, solo at {row['solo_share']:.0%}")


def print_row(row: dict) -> None:
    print(f"d_model {row['d_model']:4d} pack {row['pack']:3d} {row['attention']:8s} "
          f"solo {row['solo_model_steps_per_s']:7.1f} model-steps/s  packed {row['packed_model_steps_per_s']:7.1f}  "
          f"ratio {row['ratio']:5.2f}x  packed {row['packed_gflops']:6.1f} GFLOP/s (solo {row['solo_gflops']:6.1f})  "
          f"peak {row['peak_mem_mb']:6.0f} MB  "
          f"|packed-solo| loss {row['max_loss_diff']:.1e} param {row['max_param_diff']:.1e}  "
          f"100 seeds x 64k {row['hours_100_seeds']:6.1f} h (solo {row['hours_100_seeds_solo']:6.1f} h)  "
          f"grid {row['hours_grid']:7.1f} h", flush=True)


if __name__ == "__main__":
    main()

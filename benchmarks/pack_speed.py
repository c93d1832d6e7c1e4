"""Packed against solo training: the same M members stepped one by one, then as one pack.

    python benchmarks/pack_speed.py [--d-model 8 16 32 64 128] [--pack 1 2 4 8] [--steps 10]
                                    [--preset paper-polynomial] [--threads N] [--device cpu] [--json]

For each (d_model, pack size M) it builds M members (seeds 0..M-1) of the preset with only d_model
changed (d_mlp follows as 4 x d_model) and dropout 0 (``core/ml/packed.py`` supports no other), and
times, in the same process, one warm-up step then ``--steps`` steps of each, alternating step by
step: the M solo runs (``train_step`` on each member in turn, its own optimizer) and the pack
(``Pack.step``), both on the members' own batches. ``solo_step_s`` is the median time of one step of
all M solo runs, ``packed_step_s`` the median of one packed step, ``ratio`` = solo_step_s / packed_step_s (above 1: the pack is faster), and
``max_abs_diff`` the largest |packed - solo| over every member's loss and parameters after the
timed steps (the two paths train the same models). Model-steps/s = M / step seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.ml.packed import Pack  # noqa: E402
from core.ml.train import batch_rows, build_model, make_optimizer, resolve_device, train_step  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.problems import build_dataset, supervised_mask  # noqa: E402
from core.specs.overrides import apply_overrides  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, d_model: int, m: int, steps: int, device_name: str) -> dict:
    specs = [apply_overrides(get_preset(preset), {"d_model": d_model, "d_mlp": None, "dropout": 0.0,
                                                  "seed": seed, "device": device_name}) for seed in range(m)]
    device = resolve_device(device_name)
    t = specs[0].train
    data = build_dataset(specs[0].problem)
    tokens = torch.from_numpy(data.train_tokens).to(device=device, dtype=torch.long)  # [N, W]
    mask = torch.from_numpy(supervised_mask(data.train_lengths, data.width, t.loss_on)).to(device)  # [N, W-1]
    lengths = torch.from_numpy(data.train_lengths).to(device=device, dtype=torch.long)  # [N]
    solos = [build_model(s, device) for s in specs]
    pack = Pack(solos, lr=[s.train.lr for s in specs], weight_decay=[s.train.weight_decay for s in specs],
                optimizer=t.optimizer)  # copies the fresh weights before any solo step
    optimizers = [make_optimizer(list(model.parameters()), s.train) for model, s in zip(solos, specs)]

    def rows(step: int, spec):
        return batch_rows(step, len(tokens), spec.train.batch_size, shuffle=spec.train.shuffle, seed=spec.train.seed)

    solo_losses: list[float] = []

    def solo_step(step: int) -> None:
        solo_losses.clear()
        for model, opt, s in zip(solos, optimizers, specs):
            r = rows(step, s)
            solo_losses.append(train_step(model, opt, tokens[r], mask[r], lengths[r], loss_on=s.train.loss_on).item())

    packed_losses = torch.zeros(m)

    def packed_step(step: int) -> None:
        batches = [rows(step, s) for s in specs]
        packed_losses.copy_(pack.step(torch.stack([tokens[r] for r in batches]),  # [M, B, W]
                                      torch.stack([mask[r] for r in batches])).cpu())  # [M, B, W-1]

    def timed(fn, step: int) -> float:
        sync(device)
        start = time.perf_counter()
        fn(step)
        sync(device)
        return time.perf_counter() - start

    solo_step(1), packed_step(1)  # warm-up (step 1)
    solo_times, packed_times = [], []
    for step in range(2, steps + 2):  # alternating, so that a drift in the machine's speed hits both
        solo_times.append(timed(solo_step, step))
        packed_times.append(timed(packed_step, step))
    solo_s, packed_s = statistics.median(solo_times), statistics.median(packed_times)
    diff = max(abs(a - b) for a, b in zip(solo_losses, packed_losses.tolist()))
    for i, model in enumerate(solos):
        state = pack.member_state_dict(i)
        for name, value in model.state_dict().items():
            diff = max(diff, (state[name] - value).abs().max().item())
    return {"d_model": d_model, "pack": m, "solo_step_s": solo_s, "packed_step_s": packed_s,
            "ratio": solo_s / packed_s, "max_abs_diff": diff,
            "solo_model_steps_per_s": m / solo_s, "packed_model_steps_per_s": m / packed_s,
            "steps": steps, "batch": t.batch_size, "device": str(device), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--pack", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--preset", default="paper-polynomial")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.json:
        print(f"{'d_model':>7} {'pack':>4} {'solo ms':>9} {'packed ms':>9} {'ratio':>6} "
              f"{'model-steps/s solo':>18} {'packed':>8} {'max |diff|':>10}")
    for d_model in args.d_model:
        for m in args.pack:
            if m < 1:
                raise SystemExit(f"--pack: must be >= 1 (got {m})")
            row = measure(args.preset, d_model, m, args.steps, args.device)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{d_model:>7} {m:>4} {row['solo_step_s'] * 1e3:>9.1f} {row['packed_step_s'] * 1e3:>9.1f} "
                      f"{row['ratio']:>6.2f} {row['solo_model_steps_per_s']:>18.1f} "
                      f"{row['packed_model_steps_per_s']:>8.1f} {row['max_abs_diff']:>10.1e}", flush=True)


if __name__ == "__main__":
    main()

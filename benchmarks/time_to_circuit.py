"""Wall time and steps until a preset's circuit is there: accuracy and both heads.

    python benchmarks/time_to_circuit.py [--preset fast-polynomial] [--set key=value ...] [--threads N]

The goal, checked at every evaluation: test sequence accuracy >= 0.99 averaged over L = 4..max_len
(teacher forcing, the paper's measure) and peaky_thres >= 0.9 for the EoI locator (best layer-0
head) and the iteration head (best layer-1 head) on the probe set. Prints one line per evaluation
and a closing line with the first step that met the goal, its wall time (from process start, so
data building and start-up count) and the final figures. Runs the whole preset unless
--stop-at-goal is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.ml.train import Callbacks, train  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.specs.overrides import apply_overrides, parse_set  # noqa: E402

ACCURACY_GOAL, PEAKY_GOAL = 0.99, 0.9


def head_score(values: dict[str, float], role: str, layer: int) -> float:
    """Best averaged peaky_thres of ``role`` over the heads of ``layer``."""
    prefix = f"score/{role}/peaky_thres/L{layer}H"
    return max((v for k, v in values.items() if k.startswith(prefix) and "/len" not in k), default=0.0)


class Watch(Callbacks):
    def __init__(self, stop_at_goal: bool) -> None:
        self.stop_at_goal = stop_at_goal
        self.reached: tuple[int, float] | None = None
        self.last: dict[str, float] = {}
        self.step = 0

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.step = step
        if "test/seq_acc" not in values:
            return
        acc = values["test/seq_acc"]
        eoi, iteration = head_score(values, "eoi_locator", 0), head_score(values, "iteration", 1)
        self.last = {"acc": acc, "eoi": eoi, "iteration": iteration}
        wall = time.perf_counter() - START
        print(f"{wall:7.1f} s  step {step:6d}  test acc {acc:.3f}  EoI locator {eoi:.2f}  iteration head {iteration:.2f}",
              flush=True)
        if self.reached is None and acc >= ACCURACY_GOAL and eoi >= PEAKY_GOAL and iteration >= PEAKY_GOAL:
            self.reached = (step, wall)

    def should_stop(self) -> bool:
        return self.stop_at_goal and self.reached is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast-polynomial")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--stop-at-goal", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = apply_overrides(get_preset(args.preset), parse_set(args.set))
    watch = Watch(args.stop_at_goal)
    print(f"preset {args.preset} {' '.join(args.set)} on {spec.train.device or 'cpu'}, {torch.get_num_threads()} threads", flush=True)
    train(spec, watch)
    total = time.perf_counter() - START
    if watch.reached:
        step, wall = watch.reached
        print(f"goal reached at step {step} after {wall:.0f} s ({wall / 60:.1f} min); run ended at step {watch.step} after {total:.0f} s")
    else:
        print(f"goal not reached in {watch.step} steps ({total:.0f} s); last {watch.last}")


if __name__ == "__main__":
    main()

"""Named starting points for a run: flat spec overrides, checked like any other input.

``paper-*`` presets are the paper's setting, exactly (docs/paper.md): every value the paper fixes is
written out here even where it equals a default, so a changed default never changes them.
``fast-*`` presets trade faithfulness for a model that learns in minutes on a laptop CPU: the
same data, norm and parameter count, with 4 heads per layer, shuffled batches, a higher learning
rate with warmup and cosine decay, and no dropout (docs/calibration.md has the measurements).

``fast-parity-transfer`` is the paper's transfer comparison (parity from scratch vs parity
fine-tuned from a polynomial checkpoint) as one preset with a finer evaluation grid, so
compute-to-accuracy reads off the curves; what it starts from is an override:

    circuitboard train --preset fast-parity-transfer                                 # from scratch
    circuitboard train --preset fast-parity-transfer --set init_from=1@3000          # from run 1's weights
    circuitboard train --preset fast-parity-transfer --set init_from=1@3000 --set trainable=mlp2
    ... --set trainable=embed,blocks,ln_final,unembed                                # all but positions

``init_from`` loads the parent's weights only: the optimizer (Adam moments) and the schedule start
fresh, and the run records its lineage (``parent_run_id``, ``parent_step``).
"""

from collections.abc import Mapping
from typing import Any

from core.specs.errors import SpecError
from core.specs.overrides import apply_overrides
from core.specs.run import RunSpec


def _paper(problem: str) -> dict[str, Any]:
    return {
        # data: lengths 1..16, 1024 train + 1024 test sequences per length, test lengths = train lengths
        "problem": problem,
        "min_len": 1,
        "max_len": 16,
        "test_max_len": None,
        "n_train_per_len": 1024,
        "n_test_per_len": 1024,
        # model: 2 layers, 1 head, d_model 128, MLP 4x, learned positions, the paper's norm, no biases
        "n_layers": 2,
        "n_heads": 1,
        "d_model": 128,
        "d_mlp": None,  # 4 x d_model: 512, and it follows d_model in a sweep
        "pos_encoding": "learned",
        "norm": "paper",
        "bias": False,
        "dropout": 0.1,
        "pos_init_std": 1.0,  # PyTorch's N(0, 1) table
        # training: Adam 3e-4 constant, batch 256 sorted by length, loss on all targets after EoI,
        # 1000 epochs of 64 steps; scores every 10 epochs as the authors log them
        "optimizer": "adam",
        "weight_decay": 0.0,
        "lr": 3e-4,
        "schedule": "constant",
        "warmup_steps": 0,
        "batch_size": 256,
        "shuffle": False,
        "loss_on": "all",
        "steps": 64_000,
        "eval_every": 640,
        "snapshot_every": 640,
        "checkpoint_every": 6400,
    }


_FAST = {  # calibrated on this 2-core CPU; docs/calibration.md gives the measurements behind each value
    "n_heads": 4,  # same parameters as 1 head; accuracy 0.99 by step 1,000 instead of a plateau near 0.89
    "shuffle": True,  # mixed-length batches: length-sorted ones learn far slower per step
    "lr": 1e-3,
    "warmup_steps": 100,
    "schedule": "cosine",
    "min_lr_ratio": 0.1,
    "dropout": 0.0,
    "steps": 3000,
    "eval_every": 250,
    "snapshot_every": 250,
    "checkpoint_every": 500,
    "eval_rows_per_len": 128,  # intermediate evaluations on 128 rows per length; the last one is whole
}

_TRANSFER = {  # a shorter budget and evaluations every 100 steps: steps-to-0.99 to within 100
    "steps": 1500,
    "eval_every": 100,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper-polynomial": _paper("polynomial"),
    "paper-parity": _paper("parity"),
    "paper-binary-copy": _paper("binary_copy"),
    "fast-polynomial": {**_paper("polynomial"), **_FAST},
    "fast-parity": {**_paper("parity"), **_FAST},
    "fast-parity-transfer": {**_paper("parity"), **_FAST, **_TRANSFER},
}

PRESET_TITLES = {
    "paper-polynomial": "paper: polynomial iteration",
    "paper-parity": "paper: parity",
    "paper-binary-copy": "paper: binary copy",
    "fast-polynomial": "fast: polynomial iteration (minutes on a CPU)",
    "fast-parity": "fast: parity (minutes on a CPU)",
    "fast-parity-transfer": "fast: parity for the transfer comparison (add init_from=RUN@STEP, trainable=mlp2)",
}


def get_preset(name: str) -> dict[str, Any]:
    """A copy of the preset's flat overrides; unknown names raise SpecError listing the known ones."""
    if name not in PRESETS:
        raise SpecError([("preset", f"unknown preset {name!r}; known: {', '.join(PRESETS)}")])
    return dict(PRESETS[name])


def preset_spec(name: str, overrides: Mapping[str, Any] | None = None) -> RunSpec:
    """The preset, updated by ``overrides``, as a validated RunSpec."""
    return apply_overrides(get_preset(name), overrides or {})

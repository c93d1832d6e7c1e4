"""Which queued runs train together, and how many at once: the job layer's side of packed training.

A *pack* is a group of train jobs that one worker claims together and trains in one process with
``core.ml.packed_train.train_pack`` (docs/packed.md). Two runs can share a pack when their
:func:`pack_key` is equal: the same model shape, context width, batch size and device. Everything
else (seed, data seed, learning rate, dropout, schedule, ``init_from``, ...) may differ per member.

    key = pack_key(spec)              # stored in each train job's payload at submit time
    size = choose_pack_size(spec, requested=None, setting=None)
    seeds = parse_seeds("0-99")       # what ``--seeds`` and the form's seeds field accept

Torch-free, so the server and the supervisor can import it.
"""

from __future__ import annotations

import json
import re

from core.specs.errors import SpecError

MAX_PACK_SIZE = 512  # members in one pack: beyond this a pack's batch stops fitting anything sensible
MAX_SEEDS = 1000  # seeds in one seed set or sweep axis (the paper's figures average ~100)

# The cost model (docs/packed.md, "Choosing the pack size"). On a CPU the pack's gain over solo runs
# peaks at a few members and then flattens (measured: benchmarks/pack_speed.py), so a CPU pack
# holds CPU_PACK_SIZE members. On a GPU a pack is bounded by device memory: the estimate below of one
# member's training memory, against DEVICE_MEMORY_SHARE of the device.
CPU_PACK_SIZE = 8
GPU_PACK_SIZE = 256  # launch overhead is amortised long before this; more only adds latency per step
DEVICE_MEMORY_SHARE = 0.5
FLOAT_BYTES = 4


def model_shape(spec) -> dict:
    """The shape of ``spec``'s weights: its model fields but those that only change values
    (``dropout``, and ``pos_init_std``, which scales the initial draws), the context width and the
    vocabulary. Weights of one shape load into any model of that shape (``init_from``)."""
    model = spec.model.model_dump()
    model.pop("dropout")
    model.pop("pos_init_std")
    return {**model, "n_ctx": spec.n_ctx, "d_vocab": spec.model.d_vocab}


def pack_key(spec) -> str:
    """What members of one pack share, as a string: the model's shape, the batch size and the device."""
    return json.dumps({**model_shape(spec), "batch_size": spec.train.batch_size, "device": spec.train.device},
                      sort_keys=True)


def shape_difference(a, b) -> str | None:
    """``"d_model 16 against 32, n_ctx 9 against 17"`` where two specs' weights differ in shape; None when they fit."""
    left, right = model_shape(a), model_shape(b)
    differ = [f"{key} {left[key]} against {right[key]}" for key in left if left[key] != right.get(key)]
    return ", ".join(differ) or None


def member_bytes(spec) -> int:
    """A rough upper estimate of one member's training memory: parameters with their gradient and
    two Adam moments, and the activations autograd keeps (about 12 floats of d_model and 2 of
    d_mlp per token and layer, plus the attention maps and the logits)."""
    m = spec.model
    d_mlp, T, B = m.d_mlp or 4 * m.d_model, spec.n_ctx, spec.train.batch_size
    params = m.n_layers * (4 * m.d_model ** 2 + 2 * m.d_model * d_mlp) + 2 * m.d_vocab * m.d_model + T * m.d_model
    per_token = m.n_layers * (12 * m.d_model + 2 * d_mlp + 2 * m.n_heads * T) + 3 * m.d_vocab
    return FLOAT_BYTES * (4 * params + B * T * per_token)


def choose_pack_size(spec, *, requested: int | None = None, setting: int | None = None,
                     device_memory: int | None = None) -> int:
    """How many runs like ``spec`` one pack takes: ``requested`` (the submit's ``pack_size``), else
    the worker's ``setting`` (CIRCUITBOARD_PACK_SIZE), else the cost model: CPU_PACK_SIZE on a CPU;
    on CUDA as many members as fit in DEVICE_MEMORY_SHARE of ``device_memory`` bytes (GPU_PACK_SIZE
    when it is not known), at most GPU_PACK_SIZE."""
    for given in (requested, setting):
        if given is not None:
            return check_pack_size(given)
    device = spec.train.device or "cpu"
    if not device.startswith("cuda"):
        return CPU_PACK_SIZE
    if not device_memory:
        return GPU_PACK_SIZE
    return max(1, min(GPU_PACK_SIZE, int(DEVICE_MEMORY_SHARE * device_memory // member_bytes(spec))))


def check_pack_size(size: int, *, field: str = "pack_size") -> int:
    """``size`` if it is a pack size (1..MAX_PACK_SIZE); SpecError naming ``field`` otherwise."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise SpecError([(field, f"must be an integer (got {size!r})")])
    if not 1 <= size <= MAX_PACK_SIZE:
        raise SpecError([(field, f"must be between 1 and {MAX_PACK_SIZE} (got {size})")])
    return size


SEED_ITEM = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_seeds(text: str, *, field: str = "seeds") -> list[int]:
    """``"0-99"``, ``"0,1,5"`` or ``"0-3,10"`` -> the seeds in that order; SpecError naming ``field``
    for anything else: a range that runs backwards (``5-2``), a repeated seed, an empty list, or more
    than MAX_SEEDS seeds."""
    seeds: list[int] = []
    for item in str(text).split(","):
        match = SEED_ITEM.fullmatch(item)
        if match is None:
            raise SpecError([(field, f"expected seeds such as 0-99 or 0,1,5 (got {text!r})")])
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise SpecError([(field, f"the range {first}-{last} runs backwards; write {last}-{first}")])
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise SpecError([(field, f"at most {MAX_SEEDS} seeds in one set (got {text!r})")])
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise SpecError([(field, f"seeds repeat (got {text!r})")])
    return seeds

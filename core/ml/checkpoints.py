"""Checkpoints as bytes: what a run needs to resume bit for bit, or just its weights.

A *resume* checkpoint holds the model, the optimizer, the step and every random state (torch's
CPU generator, and the CUDA ones when used); the data order and learning rate are pure functions of
(seed, step), so they need no state of their own. A *weights* checkpoint holds the model alone; the
trainer writes one at every snapshot step so interventions can target any recorded step.
Both hold the model *folded* (``Transformer.folded_state_dict``), so any reader gets a plain
model; while a run's ``qk_scale`` is above 1, a resume checkpoint also keeps the unfolded
parameters the optimizer's moments belong to (``train_model``), and resuming loads those.
Bytes are ``torch.save`` output and are read back with ``weights_only=True`` (no pickled code).
"""

from __future__ import annotations

import io

import torch

from core.names import CHECKPOINT_RESUME, CHECKPOINT_WEIGHTS

RESUME, WEIGHTS = CHECKPOINT_RESUME, CHECKPOINT_WEIGHTS  # the stored kinds, spelled in core.names


def to_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes, *, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def resume_state(model, optimizer, step: int) -> dict:
    state = {"model": model.folded_state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    if model.qk_scale != 1.0:
        state["train_model"] = model.state_dict()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def model_weights(model) -> dict:
    return {"model": model.folded_state_dict()}

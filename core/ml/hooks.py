"""Hook points: named places in the forward pass where activations can be read or replaced.

The names follow TransformerLens (``blocks.1.attn.hook_pattern``), so a researcher who knows that
library knows ours. A hook is a function ``fn(activation, hook_name) -> activation | None``;
returning a tensor replaces the activation, returning None leaves it as it was.

Hooks are attached only inside :func:`hooks`, a context manager that always removes them, even when
the body raises, so a model never leaks an intervention into the next forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, str], torch.Tensor | None]


class HookPoint(nn.Module):
    """An identity module that runs the hooks attached to it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # set by name_hook_points() once the module tree is built
        self.fns: list[HookFn] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self.name)
            if out is not None:
                x = out
        return x


def name_hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Give every HookPoint its dotted module path as its name; return them by name."""
    points = {}
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points


@contextmanager
def hooks(model: nn.Module, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[nn.Module]:
    """Attach ``(hook_name, fn)`` pairs for the duration of the block; unknown names raise KeyError."""
    points = model.hook_points
    attached: list[tuple[HookPoint, HookFn]] = []
    try:
        for name, fn in fwd_hooks:
            if name not in points:
                raise KeyError(f"unknown hook site {name!r}; known: {', '.join(sorted(points))}")
            points[name].fns.append(fn)
            attached.append((points[name], fn))
        yield model
    finally:
        for point, fn in attached:
            point.fns.remove(fn)


def active(model: nn.Module) -> bool:
    """True when any hook is attached anywhere in the model."""
    return any(point.fns for point in model.hook_points.values())


def run_with_cache(
    model: nn.Module, tokens: torch.Tensor, names: Iterable[str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward ``tokens`` and return (logits, {hook_name: activation}) for the named sites."""
    cache: dict[str, torch.Tensor] = {}

    def save(x: torch.Tensor, name: str) -> None:
        cache[name] = x.detach()

    with hooks(model, [(name, save) for name in names]):
        logits = model(tokens)
    return logits, cache

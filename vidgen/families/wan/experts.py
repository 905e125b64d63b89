"""Wan 2.2 A14B's two experts: which transformer denoises which step, with which guidance.

diffusers' WanPipeline reads `boundary_ratio` from model_index.json: a step whose timestep is at least
`boundary_ratio * num_train_timesteps` goes to `transformer` (the high-noise expert) with
`guidance_scale`, every later step to `transformer_2` (low noise) with `guidance_scale_2`. Timesteps
only fall, so the steps split into one stretch per expert, high noise first: under model offload the
first expert leaves the device at the boundary and the second comes.
"""

from dataclasses import dataclass
from itertools import groupby

import torch
from torch import nn

# The expert each transformer of a two-expert folder is, as `--lora high=... / low=...` names them.
HIGH, LOW = "high", "low"
PARTS = {"transformer": HIGH, "transformer_2": LOW}


@dataclass(frozen=True)
class Stretch:
    """Consecutive steps that one expert denoises."""

    transformer: nn.Module
    guidance: float
    timesteps: torch.Tensor  # [n], a slice of the scheduler's, in its order


def boundary_timestep(ratio: float | None, num_train_timesteps: int) -> float | None:
    """The timestep from which on (downwards) the low-noise expert takes over; None: one expert."""
    return None if ratio is None else ratio * num_train_timesteps


def stretches(
    timesteps: torch.Tensor,
    boundary: float | None,
    experts: tuple[nn.Module, nn.Module | None],
    guidance: tuple[float, float | None],
) -> list[Stretch]:
    """The steps as stretches of one expert each: `experts[0]` (high noise) with `guidance[0]` for
    t >= boundary, `experts[1]` with `guidance[1]` for the rest; one stretch when `boundary` is None."""
    # diffusers' rule, step by step; grouped, so that a sampler whose timesteps ever rose again would
    # still give each step its own expert.
    chosen = [0 if boundary is None or t >= boundary else 1 for t in timesteps.tolist()]
    runs, start = [], 0
    for expert, steps in groupby(chosen):
        count = len(list(steps))
        runs.append(Stretch(experts[expert], guidance[expert], timesteps[start : start + count]))
        start += count
    return runs

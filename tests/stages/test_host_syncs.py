"""No host syncs inside the denoising loops (issue 11, part 3).

On a GPU every read of a device tensor's value on the host (`.item()`, `bool(t)`, `int(t)`, a tensor
passed where a number is expected, `.tolist()`, `.cpu()`) waits for the queued work to finish, so a read
per step stalls the pipeline once per step. On the CPU nothing waits, so these tests count the reads
instead, as CUDA's sync debug mode would flag them: the ops that read a scalar back (seen by a dispatch
mode, so reads made inside C++, such as `torch.full` given a tensor, count too) and the Python-level
copies to the host. A loop without per-step reads makes as many with more steps as with fewer; reads
once per video or per pyramid stage (the schedule, the block-noise factor) are allowed.
"""

import contextlib
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from torch.utils._python_dispatch import TorchDispatchMode

from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.cogvideox.denoise import Conditioning, Guidance, denoise
from vidgen.families.helios import pipeline as helios

# aten ops whose result size or value must come back to the host (they synchronise on CUDA).
SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "equal", "is_nonzero")
# Python-level copies of a tensor to the host.
HOST_COPIES = ("tolist", "cpu", "numpy")


class _CountSyncingOps(TorchDispatchMode):
    def __init__(self, counts: Counter) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def host_reads() -> Iterator[Counter]:
    counts: Counter = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in HOST_COPIES}

    def counted(name, method):
        def read(self, *args, **kwargs):
            counts[name] += 1
            return method(self, *args, **kwargs)

        return read

    for name, method in saved.items():
        setattr(torch.Tensor, name, counted(name, method))
    try:
        with _CountSyncingOps(counts):
            yield counts
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


class StandIn(torch.nn.Module):
    """Predicts 0.1 x its latents without reading anything back."""

    def forward(self, hidden_states, encoder_hidden_states, timestep, **_):
        return (0.1 * hidden_states[:, :, :4],)


def cogvideox_reads(scheduler_class, steps: int, dynamic: bool) -> Counter:
    scheduler = scheduler_class()
    scheduler.set_timesteps(steps)
    latents = torch.randn(1, 2, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    guidance = Guidance(6.0, dynamic=dynamic, steps=steps)
    with host_reads() as counts:
        denoise(
            StandIn(),
            scheduler,
            latents,
            scheduler.timesteps,
            Conditioning(text=torch.zeros(2, 5, 8)),
            guidance,
            torch.Generator().manual_seed(1),
        )
    return counts


def test_the_counter_sees_reads_made_in_python_and_in_cpp():
    value = torch.tensor(3.0)
    with host_reads() as counts:
        value.item()
        bool(value > 1)
        torch.full((2,), value)  # C++ reads the fill value
        value.tolist()
    assert counts["_local_scalar_dense"] >= 3 and counts["tolist"] == 1


@pytest.mark.parametrize("scheduler_class", [CogVideoXDDIMScheduler, CogVideoXDPMScheduler])
@pytest.mark.parametrize("dynamic", [False, True])
def test_cogvideox_loop_reads_the_schedule_once_not_per_step(scheduler_class, dynamic):
    few, many = cogvideox_reads(scheduler_class, 2, dynamic), cogvideox_reads(scheduler_class, 5, dynamic)
    assert many == few, (few, many)
    assert sum(many.values()) <= 1  # the schedule's values, read once before the loop


@pytest.fixture(scope="module")
def helios_models(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tiny")
    return {
        variant: helios.load(registry.ensure_tiny("helios", variant, cache), Runtime())
        for variant in VARIANTS
    }


# Per variant: two settings that differ only in the number of steps (pyramid steps per stage, or steps).
VARIANTS = {
    "distilled": (dict(pyramid_steps=(1, 1, 1)), dict(pyramid_steps=(3, 3, 3))),
    "mid": (dict(pyramid_steps=(1, 1, 1)), dict(pyramid_steps=(3, 3, 3))),
    "base": (dict(steps=2), dict(steps=4)),
}


def helios_reads(model, variant: str, steps: dict) -> Counter:
    distilled = variant == "distilled"
    request = Request(
        mode="t2v",
        prompt="a cat walks",
        seed=1,
        guidance=1.0 if distilled else 5.0,
        height=64,
        width=128,
        frames=66,
        steps=steps.get("steps", 2),
    )
    settings = helios.HeliosSettings(
        amplify_first_chunk=distilled, **{k: v for k, v in steps.items() if k != "steps"}
    )
    chunks = helios.generate_chunks(model, request, settings, Runtime())
    next(chunks)  # text, history start and chunk 1: count chunk 2 (its sampling and decode) only
    with host_reads() as counts:
        list(chunks)
    return counts


@pytest.mark.parametrize("variant", VARIANTS)
def test_helios_chunk_has_no_reads_per_step(helios_models, variant):
    few, many = (helios_reads(helios_models[variant], variant, steps) for steps in VARIANTS[variant])
    assert many == few, (few, many)

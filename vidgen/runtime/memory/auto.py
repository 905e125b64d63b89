"""`--offload auto`: read the device's free memory and the model's sizes, then settle the runtime.

Runs once the model's files are on disk and before any weight loads (safetensors headers and JSON
only), so the plan fits what this machine has free right now.
"""

import os
from dataclasses import replace
from pathlib import Path

import torch

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request, Runtime
from vidgen.runtime.memory.plan import FP8_STORAGE_RATIO, PLANS, MemoryPlan, Parts, Work, choose_plan
from vidgen.runtime.memory.sizes import folder_parts
from vidgen.runtime.memory.work import read_footprint, stage_work

CPU_PLAN = "on the CPU: every model stays in RAM (offloading to the CPU saves nothing)"


def settle(runtime: Runtime, folder: Path, request: Request, info: ModelInfo) -> Runtime:
    """The runtime with a concrete offload plan and VAE tiling; unchanged unless offload is "auto"."""
    if runtime.offload != "auto":
        return runtime
    if torch.device(runtime.device).type == "cpu":
        # Offloading to the CPU from the CPU saves nothing: the weights are in RAM either way.
        return replace(
            runtime, offload="none", vae_tiling=_cpu_tiling(runtime, folder, request, info), plan=CPU_PLAN
        )
    plan = plan_for(runtime, folder, request, info, free_device(runtime.device))
    quantize = runtime.quantize if runtime.quantize != "none" else plan.quantize
    return replace(
        runtime, offload=plan.offload, quantize=quantize, vae_tiling=plan.vae_tiling, plan=plan.reason
    )


def _cpu_tiling(runtime: Runtime, folder: Path, request: Request, info: ModelInfo) -> bool:
    """On the CPU: tiling as chosen, else only when an untiled decode would not fit in the free RAM."""
    if runtime.vae_tiling is not None:
        return runtime.vae_tiling
    try:
        return plan_for(runtime, folder, request, info, free_host(), (("none", "none"),)).vae_tiling
    except VidgenError:  # too big even tiled, by the estimate: tiling at least lowers the decode's peak
        return True


def plan_for(
    runtime: Runtime,
    folder: Path,
    request: Request,
    info: ModelInfo,
    free: int,
    plans: tuple[tuple[str, str], ...] = PLANS,
    host: int | None = None,
) -> MemoryPlan:
    """The planner's choice for `free` device bytes (and `host` bytes of RAM; None: what is free now),
    this model and request size; an explicit --quantize wins over the planner's fp8-storage."""
    parts, work = plan_inputs(runtime, folder, request, info)
    if runtime.quantize != "none":
        plans = tuple(plan for plan in plans if plan[1] == "none")
    host = free_host() if host is None else host
    return choose_plan(free, host, parts, work, runtime.vae_tiling, plans)


def plan_inputs(runtime: Runtime, folder: Path, request: Request, info: ModelInfo) -> tuple[Parts, Work]:
    """What the planner weighs: each part's bytes as this runtime loads them, and the request's working
    memory per stage."""
    dtype_bytes = torch.empty((), dtype=runtime.dtype).element_size()
    parts = folder_parts(
        folder, runtime.dtype, torch.float32 if info.vae_fp32 else runtime.dtype, info.experts
    )
    if runtime.quantize != "none":  # the planner sizes the user's quantized weights, never re-quantizes
        parts = replace(
            parts,
            transformer=int(parts.transformer * FP8_STORAGE_RATIO),
            transformer_2=int(parts.transformer_2 * FP8_STORAGE_RATIO),
        )
    size = (request.height, request.width, request.frames)
    return parts, stage_work(info, read_footprint(folder), *size, request.guidance > 1, dtype_bytes)


def free_device(device: str) -> int:
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return free


def free_host() -> int:
    """Bytes of RAM available to this process now (MemAvailable on Linux)."""
    available = meminfo("MemAvailable")
    if available is not None:
        return available
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def meminfo(field: str) -> int | None:
    """A /proc/meminfo field ("MemTotal", "MemAvailable") in bytes; None where it cannot be read."""
    try:
        with open("/proc/meminfo") as lines:
            for line in lines:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None

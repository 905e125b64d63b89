"""Will a request fit in memory? A lower-bound estimate, checked before any weights load.

Without it a size past the machine ends deep in generation: a traceback from the allocator on the
CPU, or the kernel's out-of-memory killer taking a whole batch with it. The estimate counts only what
no run can avoid (the weights are left out), so a size it refuses cannot run, and one it lets through
may still not fit; the allocator's own failure is then caught and explained (exit 3).
"""

import os
from pathlib import Path

from vidgen.core.errors import OUT_OF_MEMORY, VidgenError
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request, Runtime
from vidgen.runtime.memory.auto import meminfo
from vidgen.runtime.memory.work import least_bytes, read_footprint


def machine_memory(device: str) -> int | None:
    """The memory `device` has in all (bytes); None where it cannot be read (then nothing is refused)."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        return torch.cuda.get_device_properties(
            torch.cuda.current_device() if index is None else index
        ).total_memory
    if device != "cpu":
        return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return meminfo("MemTotal")


def check_fits(request: Request, info: ModelInfo, folder: Path, runtime: Runtime) -> None:
    """Refuse, before loading, a request whose least memory is more than the device has; `folder`
    holds the model's configs."""
    total = machine_memory(runtime.device)
    if total is None:
        return
    size = (request.height, request.width, request.frames)
    # Tiling left to the memory plan (None) counts as on: the plan turns it on when the decode needs it.
    tiling = runtime.vae_tiling is not False
    guided = request.guidance > 1.0  # as the pipelines decide whether to run the unconditional half
    needed = least_bytes(*size, info, read_footprint(folder), runtime.dtype.itemsize, tiling, guided)
    if needed <= total:
        return
    less = "a smaller --height/--width/--frames" + ("" if tiling else ", or --vae-tiling")
    raise VidgenError(
        f"{request.width}x{request.height} with {request.frames} frames needs at least "
        f"{needed / 2**30:.1f} GiB, more than the {total / 2**30:.1f} GiB {runtime.device} has",
        f"use less memory: {less}",
        exit_code=OUT_OF_MEMORY,
    )

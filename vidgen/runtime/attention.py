"""`--attention`: the backends diffusers' dispatcher can run, what each needs, and which one runs here."""

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidgen.core.errors import VidgenError

if TYPE_CHECKING:  # the command line reads ATTENTION_CHOICES for --help, which must load no torch
    import torch


@dataclass(frozen=True)
class AttentionBackend:
    """One `--attention` choice: the diffusers dispatcher backend it names and what that needs."""

    diffusers: str  # an `AttentionBackendName` value
    package: str | None = None  # the import name of the package it needs beyond torch
    requirement: str = ""  # that package as pip names it, with the least version diffusers takes
    install: str = ""  # how to install it, when `pip install REQUIREMENT` is not the way
    cuda_only: bool = False
    half_only: bool = False  # fp16/bf16 only
    capability: tuple[int, int] = (0, 0)  # the least CUDA compute capability


ATTENTION_BACKENDS = {
    "sdpa": AttentionBackend("native"),
    "cudnn": AttentionBackend("_native_cudnn", cuda_only=True, half_only=True, capability=(8, 0)),
    "flash": AttentionBackend(
        "flash", "flash_attn", "flash-attn>=2.6.3", cuda_only=True, half_only=True, capability=(8, 0)
    ),
    "flash3": AttentionBackend(
        "_flash_3",
        "flash_attn_3",
        "flash_attn_3",
        "build FlashAttention-3 from the hopper/ folder of github.com/Dao-AILab/flash-attention",
        cuda_only=True,
        half_only=True,
        capability=(9, 0),
    ),
    "sage": AttentionBackend(
        "sage", "sageattention", "sageattention>=2.1.1", cuda_only=True, half_only=True, capability=(8, 0)
    ),
    "flex": AttentionBackend("flex"),
    "xformers": AttentionBackend("xformers", "xformers", "xformers>=0.0.29", cuda_only=True),
}
ATTENTION_CHOICES = ("auto", *ATTENTION_BACKENDS)
# What `auto` tries, fastest first. SageAttention is left out: it quantizes q/k, so frames change.
AUTO_ATTENTION = ("flash3", "flash", "cudnn", "sdpa")


def resolve_attention(name: str, device: str, dtype: "torch.dtype") -> str:
    """The `--attention` backend to run: `name` if it can run here, else a VidgenError naming why;
    for "auto" the fastest one that can."""
    if name == "auto":
        return next(n for n in AUTO_ATTENTION if not attention_problems(ATTENTION_BACKENDS[n], device, dtype))
    if name not in ATTENTION_BACKENDS:
        raise VidgenError(f"unknown attention backend '{name}'", f"use one of {', '.join(ATTENTION_CHOICES)}")
    backend = ATTENTION_BACKENDS[name]
    problems = attention_problems(backend, device, dtype)
    if problems:
        fixes = [backend.install or f"pip install '{backend.requirement}'"] if not _installed(backend) else []
        fixes.append("or --attention auto (picks what runs here)" if fixes else "use --attention auto")
        raise VidgenError(f"--attention {name} cannot run: {'; '.join(problems)}", " ".join(fixes))
    return name


def attention_problems(backend: AttentionBackend, device: str, dtype: "torch.dtype") -> list[str]:
    """Why `backend` cannot run on `device` in `dtype` (empty when it can)."""
    import torch

    from vidgen.core.request import HALF_DTYPES, dtype_name

    problems = []
    if backend.package and not _installed(backend):
        problems.append(f"{backend.requirement} is not installed")
    kind = torch.device(device).type
    if backend.cuda_only and kind != "cuda":
        problems.append(f"it runs on CUDA GPUs only, not on {kind}")
    elif backend.capability > (0, 0) and kind == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if capability < backend.capability:
            wanted, have = ".".join(map(str, backend.capability)), ".".join(map(str, capability))
            problems.append(f"it needs a GPU of compute capability {wanted} or newer, this one is {have}")
    if backend.half_only and dtype not in HALF_DTYPES:
        problems.append(f"it computes in fp16 or bf16 only, not {dtype_name(dtype)} (pass --dtype bf16)")
    return problems


def _installed(backend: AttentionBackend) -> bool:
    if backend.package is None:
        return True
    if importlib.util.find_spec(backend.package) is None:
        return False
    distribution, _, minimum = backend.requirement.partition(">=")
    if not minimum:
        return True
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return True  # installed under another distribution name: let diffusers judge its version
    return _version_tuple(version) >= _version_tuple(minimum)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not part.isdigit():
            break
    return tuple(parts)

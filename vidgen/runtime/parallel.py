"""One video on many ranks (torchrun): context parallel attention and classifier-free-guidance parallel.

The plan is chosen before anything loads (`choose_plan`, from `--parallel` and the world size); once the
transformer is loaded, `parallelize` sets it up with diffusers' context-parallel machinery: a device mesh,
a `ContextParallelConfig`, the model's `_cp_plan` hooks that shard tokens on the way in and gather them on
the way out, and the attention dispatcher's Ulysses (all-to-all over heads) or ring (key/value all-gather)
attention (on the CPU, ring steps run PyTorch's CPU flash kernel: `cpu_ring_attention`). CFG parallel
splits the batched [unconditional; conditional] call between two rank groups and gathers the two
predictions (`CfgParallel`). Every rank holds the whole model and runs the same steps from the same seed,
so all ranks hold the same latents; rank 0 alone decodes and writes.
"""

import os
from dataclasses import replace
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from vidgen.core.choices import PARALLEL_MODES
from vidgen.core.errors import VidgenError
from vidgen.core.request import SINGLE, ParallelPlan
from vidgen.runtime.ranks import Rank

PARALLEL_CHOICES = PARALLEL_MODES
# A rank that dies leaves the others waiting in a collective; they give up after this and exit non-zero
# (torchrun also stops them when it sees the dead rank). Generous: a first step may compile for minutes.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def choose_plan(mode: str | None, rank: Rank, heads: int, guidance: bool) -> ParallelPlan:
    """The plan for `--parallel mode` on `rank.world_size` ranks for a model with `heads` attention heads
    (`guidance`: whether classifier-free guidance runs). A VidgenError when no plan fits."""
    if not rank.distributed:
        if mode is not None:
            raise VidgenError(
                f"--parallel {mode} needs several ranks",
                "start with `torchrun --nproc_per_node N -m vidgen ...`, or drop --parallel",
            )
        return SINGLE
    mode, world = mode or "auto", rank.world_size
    if mode not in PARALLEL_CHOICES:
        raise VidgenError(f"unknown --parallel {mode}", f"use one of {', '.join(PARALLEL_CHOICES)}")
    if mode == "cfg":
        if not guidance or world % 2:
            fits = "guidance above 1 and an even world size" if not guidance else "2, 4, 6 or 8 ranks"
            raise VidgenError(f"--parallel cfg cannot use {world} ranks here", f"it needs {fits}")
        rest = world // 2
        return ParallelPlan(world, cfg=2, **(_sequence("auto", rest, heads) if rest > 1 else {}))
    return ParallelPlan(world, **_sequence(mode, world, heads))


def _sequence(mode: str, ranks: int, heads: int) -> dict[str, int]:
    if mode == "ulysses":
        if heads % ranks:
            fits = [n for n in range(2, heads + 1) if heads % n == 0]
            raise VidgenError(
                f"--parallel ulysses cannot split the model's {heads} attention heads over {ranks} ranks",
                f"use {', '.join(map(str, fits))} ranks, or --parallel ring (any number of ranks)",
            )
        return {"ulysses": ranks}
    if mode == "ring":
        return {"ring": ranks}
    return {"ulysses": ranks} if heads % ranks == 0 else {"ring": ranks}  # auto


def split_tokens(plan: ParallelPlan, counts: dict[str, int]) -> ParallelPlan:
    """`plan` for sharding these sequences (name -> token count): uneven where one does not divide by
    the plan's sequence ranks; a VidgenError where one is shorter than the ranks."""
    for name, count in counts.items():
        if count < plan.sequence:
            raise VidgenError(
                f"{plan.describe()} cannot split {count} {name} tokens over {plan.sequence} ranks",
                "use fewer ranks, or a larger --height/--width/--frames",
            )
    return replace(plan, uneven=any(count % plan.sequence for count in counts.values()))


def start(rank: Rank, device: str) -> None:
    """Join the process group (gloo on the CPU, NCCL on CUDA) with a timeout on every collective."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timeout ends the rank
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)


def agree(value: Any, what: str) -> None:
    """Every rank was started with the same `value` (e.g. its options); else a one-line error on all."""
    import torch.distributed as dist

    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    different = [rank for rank, other in enumerate(values) if other != values[0]]
    if different:
        raise VidgenError(
            f"rank {different[0]} was started with different {what} than rank 0",
            "start every rank with the same command line; a prompt on stdin may reach one rank only: "
            "pass it as an argument",
        )


def leave() -> None:
    """Leave the process group after a finished run (NCCL warns at exit about a group never destroyed).
    Every rank calls it once its run is done: the barrier keeps one rank from tearing its group down
    while another still exchanges with it (gloo then aborts the process: "terminate called without an
    active exception"); rank 0 arrives once the video is written. A lone process does nothing."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def outcome_speaker() -> bool:
    """Whether this process decodes, writes and reports: rank 0 of a torchrun world, or a lone process."""
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def parallelize(transformer: nn.Module, plan: ParallelPlan, device: str) -> nn.Module:
    """`transformer` set up for `plan` (itself when single); wrapped in `CfgParallel` for cfg."""
    if plan.world_size == 1:
        return transformer
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(
        torch.device(device).type,
        (plan.cfg, plan.ring, plan.ulysses),
        mesh_dim_names=("cfg", "ring", "ulysses"),
    )
    if plan.sequence > 1:
        _context_parallel(transformer, plan, mesh["ring", "ulysses"], device)
    if plan.cfg > 1:
        return CfgParallel(transformer, mesh["cfg"].get_group())
    return transformer


def _context_parallel(transformer: nn.Module, plan: ParallelPlan, mesh: Any, device: str) -> None:
    """diffusers' `enable_parallelism`, minus its device lookup: that divides the rank by the number of
    accelerators, which is zero on a CPU (gloo) run; the rest is its own code: config, hooks, dispatcher."""
    import torch.distributed as dist
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    config = ParallelConfig(
        context_parallel_config=ContextParallelConfig(
            ring_degree=plan.ring,
            ulysses_degree=plan.ulysses,
            mesh=mesh,
            ulysses_anything=plan.uneven and plan.ulysses > 1,
            ring_anything=plan.uneven and plan.ring > 1,
        )
    )
    config.setup(dist.get_rank(), dist.get_world_size(), torch.device(device), mesh=mesh)
    transformer._parallel_config = config
    on_cpu = torch.device(device).type == "cpu"
    for module in transformer.modules():
        # The models' DispatchedAttention layers say whether they attend over the split sequence.
        if getattr(module, "splits_sequence", False):
            module.parallel_config = config
            if plan.ring > 1 and on_cpu:
                module.cpu_ring = cpu_ring_attention
    apply_context_parallel(transformer, config.context_parallel_config, transformer._cp_plan)


def cpu_ring_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, config: Any
) -> torch.Tensor:
    """diffusers' ring attention over `config`'s ring for [B, S, heads, D] CPU tensors, with PyTorch's CPU
    flash kernel for each ring step: the one CPU kernel that returns the log-sum-exp the merge needs."""
    from diffusers.models.attention_dispatch import _templated_context_parallel_attention

    return _templated_context_parallel_attention(
        query, key, value, forward_op=_cpu_flash_step, backward_op=None, _parallel_config=config
    )


def _cpu_flash_step(
    ctx: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    return_lse: bool = False,
    _save_ctx: bool = True,
    _parallel_config: Any = None,
) -> Any:
    """One ring step in the signature diffusers' ring calls its kernels with; inference only."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        *(x.transpose(1, 2) for x in (query, key, value)),
        dropout_p,
        is_causal,
        attn_mask=attn_mask,
        scale=scale,
    )
    out, lse = out.transpose(1, 2), lse.transpose(1, 2)  # [B, heads, S, ...] -> diffusers' [B, S, heads, ...]
    return (out, lse) if return_lse else out


class CfgParallel(nn.Module):
    """The transformer over a batch of [unconditional; conditional]: this rank's group computes one
    half, and the halves are gathered, so every rank gets the whole batch's prediction."""

    def __init__(self, transformer: nn.Module, group: Any) -> None:
        super().__init__()
        self.transformer = transformer
        self.group = group

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        import torch.distributed as dist

        if hidden_states.shape[0] != 2:  # guidance off for this call: nothing to split
            return self.transformer(hidden_states, *args, **kwargs)
        index = dist.get_rank(self.group)
        half = {k: _half(v, index) for k, v in kwargs.items()}
        output = self.transformer(_half(hidden_states, index), *[_half(a, index) for a in args], **half)
        sample = output[0] if isinstance(output, tuple) else output.sample
        parts = [torch.empty_like(sample) for _ in range(2)]
        dist.all_gather(parts, sample.contiguous(), group=self.group)
        whole = torch.cat(parts)
        return (whole,) if isinstance(output, tuple) else type(output)(sample=whole)

    def __getattr__(self, name: str) -> Any:  # config, dtype, rotary_embedding, cache hooks ...
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["transformer"], name)


def _half(value: Any, index: int) -> Any:
    """Branch `index` of a batch-of-two tensor; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == 2:
        return value[index : index + 1]
    return value

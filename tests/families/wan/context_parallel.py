"""Started by torchrun in the tests: tiny Wan transformers (T2V, I2V, TI2V with a timestep per token) split
over the ranks by their `_cp_plan` (diffusers' plan) give the one-process output. Rank 0 prints, per kind,
the relative difference and how many tokens the last block took, to show that the sequence was split."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from test_model import KINDS, build_pair, make_inputs, relative_error  # noqa: E402

from vidgen.runtime.parallel import ParallelPlan, parallelize  # noqa: E402


def compare(kind: str, ranks: int) -> tuple[float, int]:
    overrides, options = KINDS[kind]
    _, model = build_pair(**overrides)
    # 3 x 3 x 4 = 36 tokens: an even split over 2 or 4 ranks.
    inputs = make_inputs(overrides, **options | {"height": 6, "width": 8})
    seen = []
    model.blocks[-1].register_forward_hook(lambda _, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        reference = model(**inputs).sample
        split = parallelize(model, ParallelPlan(ranks, ulysses=ranks), "cpu")
        # return_dict=False as diffusers' pipelines call it: the plan's hook on the model itself (the
        # timestep split) passes tensors only, on diffusers' class as on ours.
        (output,) = split(**inputs, return_dict=False)
    return relative_error(output, reference), seen[-1]


dist.init_process_group("gloo")
for kind in ("t2v", "i2v", "ti2v"):
    difference, tokens = compare(kind, dist.get_world_size())
    if dist.get_rank() == 0:
        print(f"{kind} relative difference {difference:.3g} block tokens {tokens}", flush=True)
dist.barrier()  # no rank tears its group down while another still exchanges (gloo aborts then)
dist.destroy_process_group()

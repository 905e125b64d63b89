"""Started by torchrun in the tests: the tiny CogVideoX transformer split over the ranks with a text of 7
tokens (no even split) gives the one-process output; prints the largest difference on rank 0."""

import torch
import torch.distributed as dist

from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.registry import ensure_tiny
from vidgen.runtime.parallel import ParallelPlan, parallelize

dist.init_process_group("gloo")
model = CogVideoXTransformer3DModel.from_pretrained(ensure_tiny("cogvideox", "t2v"), subfolder="transformer")
config = model.config
generator = torch.Generator().manual_seed(0)
latents = torch.randn(2, 3, config.in_channels, 8, 12, generator=generator)
text = torch.randn(2, 7, config.text_embed_dim, generator=generator)
timestep = torch.tensor([500, 500])
with torch.no_grad():
    reference = model(latents, text, timestep).sample
    ranks = dist.get_world_size()
    split = parallelize(model, ParallelPlan(ranks, ulysses=ranks, uneven=True), "cpu")
    output = split(latents, text, timestep).sample
if dist.get_rank() == 0:
    print(f"max difference {(output - reference).abs().max().item():.3g}")
dist.barrier()  # no rank tears its group down while another still exchanges (gloo aborts then)
dist.destroy_process_group()

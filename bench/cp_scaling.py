"""The scaling model of one video on many GPUs (`--parallel`), on paper: `python bench/cp_scaling.py`.

A one-GPU lease cannot measure scaling, so this counts it: the transformer's FLOPs per step against a
GPU's bf16 peak, and the bytes each plan moves per step against NVLink and PCIe 4.0. Ulysses moves q, k,
v and the attention output through an all-to-all in every self-attention layer; ring attention (diffusers
rotates key/value by all-gather) brings every rank the other ranks' keys and values; cfg gathers one
prediction per step. Communication is taken as not overlapped with compute (Ulysses' all-to-all sits on
the critical path), and compute as running at the same fraction of peak on every GPU count, so the ratio
is what matters. `tests/parallel/test_one_video.py` checks `ulysses_bytes_per_rank` and
`gather_bytes_per_rank` against the bytes the CPU run puts into torch.distributed's collectives.
"""

from dataclasses import dataclass

PEAK_FLOPS = 790e12  # bf16 dense, H100/H200 class
LINKS = {"NVLink": 900e9, "PCIe 4.0": 32e9}  # bytes per second per GPU
BF16 = 2


@dataclass(frozen=True)
class Model:
    name: str
    layers: int
    width: int  # heads x head_dim
    heads: int
    ffn: int
    joint_text: int  # text tokens inside self-attention (CogVideoX); 0 when text enters by cross-attention
    cross_text: int  # text tokens that cross-attention reads (Helios)
    batch: int  # 2 under classifier-free guidance (batched), 1 without
    out_width: int = 64  # output features per token (2 x 2 patch x 16 latent channels)


def ulysses_bytes_per_rank(batch: int, tokens: int, width: int, layers: int, ranks: int, element: int) -> int:
    """Bytes one rank puts into all-to-alls per transformer call: q, k, v and the output, each
    [batch, tokens / ranks, width], in every self-attention layer ((ranks - 1) / ranks of it leaves)."""
    return 4 * layers * batch * (tokens // ranks) * width * element


def ring_bytes_per_rank(batch: int, tokens: int, width: int, layers: int, ranks: int, element: int) -> int:
    """Bytes one rank receives per call under ring attention: the other ranks' keys and values."""
    return 2 * layers * batch * (tokens // ranks) * (ranks - 1) * width * element


def gather_bytes_per_rank(batch: int, tokens: int, width: int, ranks: int, element: int) -> int:
    """Bytes one rank puts into the final all-gather of its output tokens [batch, tokens / ranks, width]."""
    return batch * (tokens // ranks) * width * element


def flops_per_call(model: Model, tokens: int) -> float:
    """Matmul FLOPs of one transformer call over `tokens` sequence tokens (2 per multiply-add)."""
    d = model.width
    projections = 8 * d * d + (4 * d * d if model.cross_text else 0)  # q k v o (+ cross-attention q o)
    mlp = 4 * d * model.ffn
    attention = 4 * tokens * d + 4 * model.cross_text * d
    return model.batch * model.layers * tokens * (projections + mlp + attention)


def step_seconds(model: Model, tokens: int, plan: str, gpus: int, link: float) -> float:
    """Seconds per transformer call on `gpus` GPUs for `plan` ("ulysses", "ring", "cfg+ulysses")."""
    compute = flops_per_call(model, tokens) / PEAK_FLOPS / gpus
    if gpus == 1:
        return compute
    return compute + _moved(model, tokens, plan, gpus) / link


COGVIDEOX_5B = Model("CogVideoX-5b", 42, 3072, 48, 4 * 3072, 226, 0, 2)
HELIOS_DISTILLED = Model("Helios-Distilled (14B)", 40, 5120, 40, 13824, 0, 512, 1)
# 49 frames at 480x720: 13 latent frames of 60x90, 2x2 patches -> 13 x 30 x 45 video tokens, plus text.
COGVIDEOX_TOKENS = 13 * 30 * 45 + 226
# One 33-frame chunk at 384x640: 9 latent frames of 48x80; the pyramid's three stages run the chunk at
# 1/4, 1/2 and full size (2 steps each). History: short 2 latent frames at 1x (2 x 24 x 40), mid 2 at
# 2x coarser (1 x 12 x 20), long 16 at 4x coarser (4 x 6 x 10): 2400 tokens at every stage.
HELIOS_HISTORY = 2 * 24 * 40 + 1 * 12 * 20 + 4 * 6 * 10
HELIOS_STAGES = [HELIOS_HISTORY + 9 * n for n in (6 * 10, 12 * 20, 24 * 40)]


def table() -> list[str]:
    lines = []
    for model, stages, unit in (
        (COGVIDEOX_5B, [COGVIDEOX_TOKENS], "step"),
        (HELIOS_DISTILLED, HELIOS_STAGES, "chunk (3 stages x 2 steps)"),
    ):
        calls = 1 if len(stages) == 1 else 2
        flops = sum(flops_per_call(model, t) for t in stages) * calls
        one = flops / PEAK_FLOPS
        lines.append(
            f"{model.name}: tokens {stages}, {flops / 1e12:.0f} TFLOP per {unit}, {one:.3f} s on 1 GPU"
        )
        for gpus in (2, 4, 8):
            for plan in ("ulysses", "ring", "cfg+ulysses"):
                if plan == "cfg+ulysses" and model.batch == 1:
                    continue
                if plan == "ulysses" and model.heads % (gpus // (2 if "cfg" in plan else 1)):
                    continue
                mb = sum(_moved(model, t, plan, gpus) for t in stages) * calls / 1e6
                cells = []
                for link_name, link in LINKS.items():
                    seconds = sum(step_seconds(model, t, plan, gpus, link) for t in stages) * calls
                    cells.append(f"{link_name} {seconds:.3f} s ({one / seconds:.2f}x)")
                shown = "cfg" if plan == "cfg+ulysses" and gpus == 2 else plan
                lines.append(f"  {gpus} GPUs {shown:12s} {mb:9.0f} MB/rank  " + "  ".join(cells))
    return lines


def _moved(model: Model, tokens: int, plan: str, gpus: int) -> float:
    """Bytes one rank sends per call: attention traffic, the output gather, cfg's prediction gather
    (outputs counted over all `tokens`, a slight overcount: only video tokens are gathered)."""
    batch, ranks = (1, gpus // 2) if plan == "cfg+ulysses" else (model.batch, gpus)
    cfg = gather_bytes_per_rank(1, tokens, model.out_width, 1, BF16) if plan == "cfg+ulysses" else 0
    if ranks == 1:
        return cfg
    share = (ranks - 1) / ranks
    output = gather_bytes_per_rank(batch, tokens, model.out_width, ranks, BF16) * (ranks - 1)
    if plan == "ring":
        attention = ring_bytes_per_rank(batch, tokens, model.width, model.layers, ranks, BF16)
    else:
        attention = ulysses_bytes_per_rank(batch, tokens, model.width, model.layers, ranks, BF16) * share
    return attention + output + cfg


if __name__ == "__main__":
    print("\n".join(table()))

"""Choose how a model runs on a device of a given size: the fastest offload plan whose peak fits.

A pure function of numbers (free device memory, free host memory, the parts' weight bytes and each
stage's working memory), so it is tested with the released models' real sizes on any machine. The
plans, fastest first:

- "none": every part resident on the device for the whole run.
- "model": each stage's model comes to the device for its stage and leaves after it (the text encoder
  is parked once the prompt is encoded, the transformer before the decode). A model of two experts
  (Wan 2.2 A14B) has one on the device at a time: the high-noise one leaves at the boundary step.
- "group": groups of blocks stream to the device while the previous group computes (diffusers' group
  offloading with CUDA streams); two groups are in flight at once.
- "group" + fp8-storage: the same with the weights stored in fp8, halving what streams and what the
  host holds.
- "sequential": every layer streams on its own (accelerate's hooks); the least device memory, the
  slowest.
VAE tiling turns on when the decode would not fit untiled.
"""

from dataclasses import dataclass

from vidgen.core.errors import OUT_OF_MEMORY, VidgenError

GB = 1e9  # what users read off nvidia-smi and card boxes
# Weights streamed in fp8 where they were bf16/fp16: half the bytes (the fp32-kept modules are small).
FP8_STORAGE_RATIO = 0.5
# A transformer block's linear layers: sequential offload brings one at a time (attention's four
# projections and the feed-forward's two make six of about equal size).
LAYERS_PER_BLOCK = 6


@dataclass(frozen=True)
class Parts:
    """Weight bytes of each part as loaded for compute, and how many repeated blocks each has."""

    text_encoder: int
    transformer: int
    vae: int
    text_encoder_blocks: int
    transformer_blocks: int
    # The second expert's bytes (Wan 2.2 A14B's low-noise transformer; 0: one transformer). Both are
    # held; the device needs only the one denoising, unless nothing is offloaded.
    transformer_2: int = 0
    # Wan 2.1 I2V's CLIP image encoder (ViT-H, 0.6B parameters in float32; 0: none). It runs in a stage
    # of its own, before the VAE encodes the image; its activations (257 tokens) are negligible.
    image_encoder: int = 0
    image_encoder_blocks: int = 1

    @property
    def total(self) -> int:
        return self.text_encoder + self.transformers + self.vae + self.image_encoder

    @property
    def transformers(self) -> int:
        """Every expert's bytes: what a plan holds."""
        return self.transformer + self.transformer_2

    @property
    def expert(self) -> int:
        """The largest expert's bytes: what the device holds while it denoises."""
        return max(self.transformer, self.transformer_2)


@dataclass(frozen=True)
class Work:
    """Working memory (activations, caches) of each stage at its peak, beyond its weights."""

    text: int
    denoise: int
    decode: int
    decode_tiled: int


@dataclass(frozen=True)
class MemoryPlan:
    offload: str  # "none" | "model" | "group" | "sequential"; never "auto"
    quantize: str  # "none" | "fp8-storage"
    vae_tiling: bool
    reason: str  # one line for the user and the sidecar
    device_bytes: int  # the plan's estimated peak on the device


# (offload, quantize) in the order the planner tries them: fastest first.
PLANS = (
    ("none", "none"),
    ("model", "none"),
    ("group", "none"),
    ("group", "fp8-storage"),
    ("sequential", "none"),
)


def choose_plan(
    free_device: int,
    free_host: int,
    parts: Parts,
    work: Work,
    vae_tiling: bool | None = None,
    plans: tuple[tuple[str, str], ...] = PLANS,
) -> MemoryPlan:
    """The fastest plan whose device peak fits `free_device` and whose host copy fits `free_host`.

    `vae_tiling` None lets the planner turn tiling on when an untiled decode does not fit; True or
    False is the user's choice and is kept. Raises VidgenError (exit 3) when nothing fits.
    """
    for offload, quantize in plans:
        for tiled in (False, True) if vae_tiling is None else (vae_tiling,):
            device = device_peak(offload, quantize, parts, work, tiled)
            host = host_need(offload, quantize, parts)
            if device <= free_device and host <= free_host:
                reason = _reason(free_device, parts, offload, quantize, tiled, vae_tiling)
                return MemoryPlan(offload, quantize, tiled, reason, device)
    return _nothing_fits(free_device, free_host, parts, work, plans)


def device_peak(offload: str, quantize: str, parts: Parts, work: Work, tiled: bool) -> int:
    """The estimated peak device bytes of a plan: the largest of its stages, run one after another."""
    decode = parts.vae + (work.decode_tiled if tiled else work.decode)
    scale = FP8_STORAGE_RATIO if quantize == "fp8-storage" else 1.0
    if offload == "none":
        weights = parts.text_encoder + parts.transformers * scale + parts.vae + parts.image_encoder
        return int(weights + max(work.text, work.denoise, decode - parts.vae))
    if offload == "model":
        text = parts.text_encoder + work.text
        return int(max(text, parts.image_encoder, parts.expert * scale + work.denoise, decode))
    if offload == "group":
        # Two groups of one block each are on the device at once: the one computing, the one copying in.
        # The image encoder has no top-level block list: it comes whole for its stage, as under "model".
        text_groups = 2 * parts.text_encoder / parts.text_encoder_blocks
        blocks = 2 * parts.expert * scale / parts.transformer_blocks
        return int(max(text_groups + work.text, parts.image_encoder, blocks + work.denoise, decode))
    if offload == "sequential":
        layer = parts.expert / parts.transformer_blocks / LAYERS_PER_BLOCK
        text_layer = parts.text_encoder / parts.text_encoder_blocks / LAYERS_PER_BLOCK
        image_layer = parts.image_encoder / parts.image_encoder_blocks / LAYERS_PER_BLOCK
        return int(max(text_layer + work.text, image_layer, layer + work.denoise, decode))
    raise ValueError(f"unknown offload plan {offload!r}")


def host_need(offload: str, quantize: str, parts: Parts) -> int:
    """Host bytes a plan keeps: the offloaded weights, stored once (no pinned second copy)."""
    if offload == "none":
        return 0
    scale = FP8_STORAGE_RATIO if quantize == "fp8-storage" else 1.0
    return int(parts.text_encoder + parts.transformers * scale + parts.vae + parts.image_encoder)


def _reason(
    free_device: int, parts: Parts, offload: str, quantize: str, tiled: bool, vae_tiling: bool | None
) -> str:
    transformer = f"transformer {parts.transformer / GB:.1f} GB"
    if parts.transformer_2:
        transformer = f"two experts {parts.transformer / GB:.1f} + {parts.transformer_2 / GB:.1f} GB"
    sizes = f"{free_device / GB:.1f} GB free, {transformer}"
    what = {
        "none": "everything resident",
        "model": "each model on the device for its stage only"
        + (" (one expert at a time)" if parts.transformer_2 else ""),
        "group": "group offload",
        "sequential": "sequential offload",
    }[offload]
    if quantize == "fp8-storage":
        what += " with fp8-storage weights"
    if tiled and vae_tiling is None:
        what += ", VAE tiling"
    return f"{sizes}: {what}"


def _nothing_fits(
    free_device: int, free_host: int, parts: Parts, work: Work, plans: tuple[tuple[str, str], ...]
) -> MemoryPlan:
    least = min(device_peak(offload, quantize, parts, work, True) for offload, quantize in plans)
    least_host = min(
        (host_need(offload, quantize, parts) for offload, quantize in plans if offload != "none"), default=0
    )
    if least > free_device:
        problem = f"{free_device / GB:.1f} GB free on the device; the smallest plan needs {least / GB:.1f} GB"
        hint = "a smaller --height/--width/--frames, or a device with more free memory"
    else:
        problem = f"{free_host / GB:.1f} GB of host memory; offloading needs {least_host / GB:.1f} GB"
        hint = "close other programs, or use a machine with more RAM"
    raise VidgenError(f"this model does not fit: {problem}", hint, exit_code=OUT_OF_MEMORY)


def next_plan(offload: str, quantize: str) -> str | None:
    """The plan after this one in the planner's order, as an option string, or None after the last."""
    index = PLANS.index((offload, quantize)) if (offload, quantize) in PLANS else -1
    if index < 0 or index + 1 >= len(PLANS):
        return None
    offload, quantize = PLANS[index + 1]
    return f"--offload {offload}" + (f" --quantize {quantize}" if quantize != "none" else "")

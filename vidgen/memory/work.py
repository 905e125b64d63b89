"""Estimates of each stage's working memory (activations), from the request's size and the configs.

Estimates, not measurements: they decide between offload plans that differ by gigabytes, so a
factor that is right within tens of percent is enough. Each constant says where it comes from;
bench/gpu_suite.py measures the real peaks when a GPU is lent.
"""

from vidgen.memory.plan import Work
from vidgen.model_info import ModelInfo

# One transformer block at its peak holds the residual stream, the normed input, q, k, v, the attention
# output and the feed-forward's inner activation (4 to 2.7 times wider): about 7 hidden-width tensors
# plus 2 inner-width ones per token, with memory-efficient attention (no sequence x sequence matrix).
HIDDEN_TENSORS = 7
INNER_TENSORS = 2
# The VAE decoder's full-resolution stages run its first block's channels (CogVideoX 128, Wan 96) on a
# few frames at a time with about six such tensors alive (input, two convolutions, norm, the causal
# cache, the output).
DECODE_TENSORS = 6
DECODE_FRAMES = {"cogvideox": 8, "helios": 4}  # frames decoded together (2 latent frames, or 1 causal)
DECODE_BYTES = {"cogvideox": 2, "helios": 4}  # the CogVideoX VAE runs in the model dtype, Wan's in fp32
TILE_FRACTION = 0.3  # a tile with its overlap, against the whole frame (diffusers' default tiles)
HELIOS_HISTORY_TOKENS = 1.5  # compressed long/mid/short history, in chunks' worth of tokens (16+2+1 latents)


def transformer_work(tokens: int, dim: int, inner: int, batch: int, element_bytes: int) -> int:
    """Peak activation bytes of one block's forward for `batch` sequences of `tokens` tokens."""
    return batch * tokens * (HIDDEN_TENSORS * dim + INNER_TENSORS * inner) * element_bytes


def stage_work(
    info: ModelInfo,
    transformer: dict,
    text_encoder: dict,
    vae: dict,
    height: int,
    width: int,
    frames: int,
    guidance: bool,
    element_bytes: int,
) -> Work:
    """Working memory of the text, denoise and decode stages for one request.

    `transformer`, `text_encoder` and `vae` are their config.json; `guidance` whether classifier-free guidance
    doubles the batch; `element_bytes` the compute dtype's width.
    """
    batch = 2 if guidance else 1
    grid = (height // info.spatial_scale // info.patch_size) * (
        width // info.spatial_scale // info.patch_size
    )
    if info.family == "helios":
        chunk_latents = info.latent_frames(info.sample_size[2])
        tokens = int(chunk_latents * grid * (1 + HELIOS_HISTORY_TOKENS))
        dim = transformer["num_attention_heads"] * transformer["attention_head_dim"]
        inner = transformer["ffn_dim"]
    else:
        latents = info.latent_frames(frames)
        tokens = latents // (info.patch_size_t or 1) * grid + info.max_text_tokens
        dim = transformer["num_attention_heads"] * transformer["attention_head_dim"]
        inner = 4 * dim
    text = transformer_work(
        info.max_text_tokens, text_encoder["d_model"], text_encoder["d_ff"], batch, element_bytes
    )
    decode_frames = min(DECODE_FRAMES[info.family], frames)
    channels = vae["block_out_channels"][0] if "block_out_channels" in vae else vae["base_dim"]
    decode = decode_frames * height * width * channels * DECODE_TENSORS * DECODE_BYTES[info.family]
    return Work(
        text=text,
        denoise=transformer_work(tokens, dim, inner, batch, element_bytes),
        decode=decode,
        decode_tiled=int(decode * TILE_FRACTION),
    )

"""Wan image-to-video's conditioning: the image (and, for first-last-frame, the last image) as the
transformer sees it, as diffusers' WanImageToVideoPipeline makes it.

Wan 2.1 I2V and 2.2 I2V A14B:
- (2.1 only) CLIP ViT-H's last-but-one hidden states, attended to by each block's extra cross-attention;
- a video of the image then black frames (then the last image), encoded by the VAE to its mean, put on
  the channel axis after a 4-channel mask of which frames are given: [1, 4 + C, F', h, w].
Wan 2.2 TI2V-5B: the image's latent is the first latent frame itself, kept clean (`first_frame`).

No random draw happens here (the VAE's mean, not a sample), so the seed's one draw stays the noise.
"""

from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from torch import nn

from vidgen.core.request import Request, Runtime
from vidgen.stages import wan_vae
from vidgen.weights import loading


def load_image_encoder(folder: Path, runtime: Runtime) -> dict:
    """The folder's CLIP image encoder (float32, safetensors only, placed for `runtime`) and its
    processor; nothing for a folder without one (text-to-video)."""
    index = loading.model_index(folder)
    entry = index.get("image_encoder")
    if not isinstance(entry, list) or entry[-1] is None:
        return {}
    # float32 whatever --dtype, as the model cards load it: CLIP's states are small and few.
    encoder = transformers.CLIPVisionModel.from_pretrained(
        folder / "image_encoder", dtype=torch.float32, use_safetensors=True
    )
    processor = transformers.CLIPImageProcessor.from_pretrained(folder / "image_processor")
    return dict(image_encoder=loading.place(encoder.eval(), runtime), image_processor=processor)


def images(request: Request) -> list[np.ndarray]:
    """The given frames: the first image, and the last one when there is one."""
    return [request.image] + ([request.last_image] if request.last_image is not None else [])


def embed_images(
    encoder: nn.Module,
    processor: object,
    frames: list[np.ndarray],
    runtime: Runtime,
    park: str | torch.device,
) -> torch.Tensor:
    """CLIP hidden states [len(frames), I, D] of the last-but-one layer, on the device (float32).

    The processor gets the images as PIL images, as it gets them from a diffusers user: its resize (to
    224 for ViT-H, then a centre crop) is its own, whatever the video's size.
    """
    pixels = processor(images=[Image.fromarray(frame) for frame in frames], return_tensors="pt")
    with loading.on_device(encoder, runtime, park):
        states = encoder(pixel_values=pixels["pixel_values"].to(runtime.device), output_hidden_states=True)
    return states.hidden_states[-2].to(runtime.device)


def condition(vae: nn.Module, request: Request, runtime: Runtime, park: str | torch.device) -> torch.Tensor:
    """[1, 4 + C, F', h, w] float32: the given-frames mask, then the VAE's latents of the given frames
    with black between them."""
    processor = wan_vae.video_processor(vae)
    size = (request.height, request.width)
    given = [processor.preprocess(Image.fromarray(frame), *size) for frame in images(request)]  # [1, 3, H, W]
    # [1, 3, F, H, W]: the first image, black (zero) frames, and the last image if given.
    video = given[0].new_zeros((1, 3, request.frames, request.height, request.width))
    video[:, :, 0] = given[0][0]
    if len(given) > 1:
        video[:, :, -1] = given[1][0]
    with loading.on_device(vae, runtime, park):
        latents = wan_vae.encode_mean(vae, video, runtime.device)
    mask = given_mask(request.frames, vae.config.scale_factor_temporal, len(given) > 1)
    mask = mask[None, :, :, None, None].expand(1, -1, -1, *latents.shape[-2:]).to(latents.device)
    return torch.cat([mask, latents], dim=1)


def first_frame(vae: nn.Module, request: Request, runtime: Runtime, park: str | torch.device) -> torch.Tensor:
    """[1, C, 1, h, w] float32: the image's latent (the VAE's mean), TI2V-5B's first latent frame."""
    processor = wan_vae.video_processor(vae)
    pixels = processor.preprocess(Image.fromarray(request.image), request.height, request.width)
    with loading.on_device(vae, runtime, park):
        return wan_vae.encode_mean(vae, pixels.unsqueeze(2), runtime.device)


def given_mask(frames: int, temporal: int, last: bool) -> torch.Tensor:
    """[temporal, F'] float32: 1 where a video frame is given, per latent frame and the frame's place
    in it.

    The VAE packs the first frame alone and then `temporal` frames per latent frame; the mask gives
    every latent frame `temporal` channels by repeating the first frame's value `temporal` times.
    """
    pixel = torch.zeros(frames)
    pixel[0] = 1.0
    if last:
        pixel[-1] = 1.0
    padded = torch.cat([pixel[:1].repeat(temporal - 1), pixel])  # [temporal * F']
    return padded.view(-1, temporal).T.contiguous()

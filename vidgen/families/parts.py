"""The parts every family's pipeline holds, loaded one way for all of them."""

from pathlib import Path
from typing import Any

import torch

from vidgen.core.request import Runtime
from vidgen.runtime.levers import ready_transformer
from vidgen.weights import loading


def load_parts(
    folder: Path,
    runtime: Runtime,
    transformer: type,
    vae: type,
    vae_dtype: torch.dtype,
    schedulers: dict,
    expert: str = "",
) -> dict[str, Any]:
    """folder, tokenizer, text encoder, transformer (levers applied), VAE and scheduler of a
    diffusers-format folder, placed for `runtime`: a family's pipeline dataclass takes them as they are.
    `expert`: which expert the transformer is, for the LoRAs named for one (Wan 2.2's "high")."""
    tokenizer = loading.load_tokenizer(folder)  # first: a tokenizer that cannot load fails in seconds
    text_encoder = loading.load_text_encoder(folder, runtime.dtype)
    denoiser = loading.load_diffusers_model(transformer, folder, "transformer", runtime.dtype)
    decoder = loading.load_diffusers_model(vae, folder, "vae", vae_dtype)
    return dict(
        folder=folder,
        tokenizer=tokenizer,
        text_encoder=loading.place(text_encoder, runtime),
        transformer=ready_transformer(denoiser, runtime, expert),
        vae=loading.place(decoder, runtime),
        scheduler=loading.load_scheduler(folder, schedulers),
    )

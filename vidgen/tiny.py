"""Tiny random-weight pipelines in diffusers' folder format, built offline and deterministically.

They let tests and the `tiny-*` presets run the real loading code on a machine with no model hub:
the folders have the same layout as the released checkpoints (model_index.json, tokenizer,
text_encoder, transformer, vae, scheduler), only with small random weights.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from vidgen.errors import VidgenError
from vidgen.io.partials import Hold, remove_stale_folders

# Bumped whenever a variant's configuration or the weight recipe changes, so cached builds are redone.
BUILDER_VERSION = 1

# A small English vocabulary; anything else falls back to single letters, then to bytes.
_WORDS = """a an the of in on at to with and or is are was by for from over under into through
cat dog bird fish horse monkey panda robot person man woman child car boat train plane
city street forest river ocean sea beach mountain sky sun moon star cloud rain snow fire water
red green blue yellow white black golden bright dark slow fast small big tiny old new
walks runs flies swims dances jumps sits plays eats drinks looks moves turns rises falls
camera video scene view shot close wide night day morning evening light shadow painting
a photo of cinematic realistic beautiful calm wind tree flower grass field road house window""".split()

TEXT_DIM = 32

COGVIDEOX_VARIANTS: dict[str, dict] = {
    # Like CogVideoX-2b: 3-D sin-cos positions.
    "t2v": dict(
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDDIMScheduler",
        transformer=dict(
            use_rotary_positional_embeddings=False,
            spatial_interpolation_scale=1.875,
        ),
    ),
    # Like CogVideoX-5b: 3-D rotary positions.
    "rotary-t2v": dict(
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDDIMScheduler",
        transformer=dict(use_rotary_positional_embeddings=True),
    ),
    # Like CogVideoX-5b-I2V: rotary and learned positions, image latents on the channel axis.
    "i2v": dict(
        pipeline="CogVideoXImageToVideoPipeline",
        scheduler="CogVideoXDPMScheduler",
        transformer=dict(
            in_channels=8,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        ),
    ),
    # Like CogVideoX1.5-5B: rotary, temporal patches of 2, no patch bias.
    "1.5-t2v": dict(
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDPMScheduler",
        transformer=dict(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False),
    ),
    # Like CogVideoX1.5-5B-I2V: as 1.5 plus the ofs embedding.
    "1.5-i2v": dict(
        pipeline="CogVideoXImageToVideoPipeline",
        scheduler="CogVideoXDPMScheduler",
        transformer=dict(
            in_channels=8,
            use_rotary_positional_embeddings=True,
            patch_size_t=2,
            patch_bias=False,
            ofs_embed_dim=16,
        ),
    ),
}

# The size a tiny CogVideoX model is "trained" at: 96x64 pixels (width x height), 9 frames (3 latent
# frames of 12x8).
COGVIDEOX_SAMPLE = dict(sample_height=8, sample_width=12, sample_frames=9)
# Every tiny model's parts; the variants above change the transformer's (bench/suite_models.py builds
# its CPU smoke models from these too).
COGVIDEOX_TRANSFORMER = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    time_embed_dim=16,
    text_embed_dim=TEXT_DIM,
    num_layers=2,
    max_text_seq_length=226,
    **COGVIDEOX_SAMPLE,
)
COGVIDEOX_VAE = dict(
    down_block_types=("CogVideoXDownBlock3D",) * 4,
    up_block_types=("CogVideoXUpBlock3D",) * 4,
    block_out_channels=(8, 8, 8, 8),
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=2,
    temporal_compression_ratio=4,
)
HELIOS_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=TEXT_DIM,
    freq_dim=32,
    ffn_dim=32,
    num_layers=2,
    rope_dim=(4, 4, 4),
)
HELIOS_VAE = dict(
    base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)

HELIOS_VARIANTS: dict[str, dict] = {
    "base": dict(
        pipeline="HeliosPipeline",
        scheduler=("HeliosScheduler", dict(stages=1, stage_range=[0, 1], use_dynamic_shifting=True)),
        config={},
    ),
    # Like Helios-Mid: pyramid sampling with the UniPC HeliosScheduler (3 stages, exponential dynamic
    # shifting, as the authors' stage-2 validation config builds it) and CFG-Zero*.
    "mid": dict(
        pipeline="HeliosPyramidPipeline",
        scheduler=("HeliosScheduler", dict(use_dynamic_shifting=True, time_shift_type="exponential")),
        config={"is_distilled": False, "is_cfg_zero_star": True},
    ),
    "distilled": dict(
        pipeline="HeliosPyramidPipeline",
        scheduler=("HeliosDMDScheduler", {}),
        config={"is_distilled": True, "is_cfg_zero_star": False},
    ),
}


def build_tiny_cogvideox(folder: str | Path, variant: str = "t2v", seed: int = 0) -> Path:
    """Write a tiny CogVideoX pipeline folder that diffusers and vidgen both load; returns it."""
    import diffusers
    from transformers import T5Config, T5EncoderModel

    spec = COGVIDEOX_VARIANTS[variant]
    transformer_config = {**COGVIDEOX_TRANSFORMER, **spec["transformer"]}
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=226),
        "text_encoder": lambda: T5EncoderModel(T5Config(**_t5_config())),
        "transformer": lambda: diffusers.CogVideoXTransformer3DModel(**transformer_config),
        "vae": lambda: diffusers.AutoencoderKLCogVideoX(**COGVIDEOX_VAE),
        "scheduler": lambda: getattr(diffusers, spec["scheduler"])(),
    }
    return _write_pipeline(Path(folder), spec["pipeline"], components, {}, seed)


def build_tiny_helios(folder: str | Path, variant: str = "base", seed: int = 0) -> Path:
    """Write a tiny Helios pipeline folder (UMT5 text encoder, Wan VAE); returns it."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    spec = HELIOS_VARIANTS[variant]
    scheduler_name, scheduler_config = spec["scheduler"]
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**_t5_config())),
        "transformer": lambda: diffusers.HeliosTransformer3DModel(**HELIOS_TRANSFORMER),
        "vae": lambda: diffusers.AutoencoderKLWan(**HELIOS_VAE),
        "scheduler": lambda: getattr(diffusers, scheduler_name)(**scheduler_config),
    }
    return _write_pipeline(Path(folder), spec["pipeline"], components, spec["config"], seed)


def build_tokenizer(model_max_length: int):
    """A T5-style tokenizer (pad 0, eos 1, unk 2) made with the `tokenizers` library, no download.

    Unigram over a small word list plus single characters, with byte fallback, so every prompt
    encodes to known ids the way sentencepiece-based T5 tokenizers do.
    """
    from transformers import T5TokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    byte_pieces = [(f"<0x{b:02X}>", -20.0) for b in range(256)]
    characters = [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;\"()"]
    words = [("▁" + w, -5.0) for w in dict.fromkeys(_WORDS)]
    vocab = specials + byte_pieces + [("▁", -3.0)] + characters + words
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=model_max_length,
    )


def _t5_config() -> dict:
    vocab_size = len(build_tokenizer(model_max_length=1))
    return dict(
        vocab_size=vocab_size,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,  # a tiny model built in training mode must still be deterministic
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def _write_pipeline(
    folder: Path, pipeline: str, factories: dict[str, Callable], extra_config: dict, seed: int
) -> Path:
    import diffusers

    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__, **extra_config}
    for offset, (name, factory) in enumerate(factories.items()):
        # Each component gets its own seed so adding one never changes the weights of the others.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + offset)
            component = factory()
            if isinstance(component, torch.nn.Module):
                _fill_zero_weights(component)
        component.save_pretrained(folder / name)
        library = "transformers" if type(component).__module__.startswith("transformers") else "diffusers"
        index[name] = [library, type(component).__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def _fill_zero_weights(model: torch.nn.Module) -> None:
    """Give all-zero parameters (zero-initialised output layers) random values.

    A zero-initialised output projection would make every transformer output zero, and a test
    that compares two implementations would then pass whatever they compute.
    """
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            if parameter.is_floating_point() and not parameter.any():
                parameter.normal_(0.0, 0.02)


def default_cache_dir() -> Path:
    """Where built tiny models live: $VIDGEN_CACHE, else $XDG_CACHE_HOME/vidgen, else ~/.cache/vidgen."""
    if os.environ.get("VIDGEN_CACHE"):
        return Path(os.environ["VIDGEN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidgen"


def ensure_tiny(family: str, variant: str, cache_dir: Path | None = None, seed: int = 0) -> Path:
    """Build a tiny pipeline once into the cache and return its folder.

    The build goes to a temporary folder (mode 0700, as mkdtemp makes it) renamed into place, so an
    interrupted build never leaves a half-written model that a later run would trust. A cache that
    cannot be written is one VidgenError naming it.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        return _ensure_tiny(family, variant, cache_dir, seed)
    except OSError as error:  # a read-only cache, another user's, a full disk
        raise VidgenError(
            f"cannot build the tiny model in the cache '{cache_dir}': {error.strerror or error}",
            "set VIDGEN_CACHE to a folder of yours that you can write",
        ) from None


def _ensure_tiny(family: str, variant: str, cache_dir: Path, seed: int) -> Path:
    builders = {"cogvideox": build_tiny_cogvideox, "helios": build_tiny_helios}
    target = cache_dir / "tiny" / f"{family}-{variant}-seed{seed}-v{BUILDER_VERSION}"
    remove_stale_folders(target.parent, ".building-")  # builds that a killed process left
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    hold = Hold(staging)  # ours while this process lives: another one's cleanup leaves it alone
    try:
        builders[family](staging, variant=variant, seed=seed)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same build first; its copy is as good as ours.
            if not (target / "model_index.json").is_file():
                raise
    finally:
        hold.release()
        shutil.rmtree(staging, ignore_errors=True)
    return target

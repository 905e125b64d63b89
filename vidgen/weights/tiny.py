"""Tiny random-weight pipelines in diffusers' folder format, built offline and deterministically.

They let tests and the `tiny-*` presets run the real loading code on a machine with no model hub:
the folders have the same layout as the released checkpoints (model_index.json, tokenizer,
text_encoder, transformer, vae, scheduler), only with small random weights.
"""

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from vidgen.core.errors import VidgenError
from vidgen.core.paths import default_cache_dir
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
# Wan 2.1's VAE (AutoencoderKLWan), tiny: Wan and Helios (a Wan fine-tune) both decode with it.
WAN_VAE = dict(
    base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)


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


def t5_config() -> dict:
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


def write_pipeline(
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


def ensure_tiny(
    family: str,
    build: Callable[[Path, str, int], Path],
    variant: str,
    cache_dir: Path | None = None,
    seed: int = 0,
) -> Path:
    """Build a tiny pipeline once into the cache and return its folder.

    The build goes to a temporary folder (mode 0700, as mkdtemp makes it) renamed into place, so an
    interrupted build never leaves a half-written model that a later run would trust. A cache that
    cannot be written is one VidgenError naming it.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        return _ensure_tiny(family, build, variant, cache_dir, seed)
    except OSError as error:  # a read-only cache, another user's, a full disk
        raise VidgenError(
            f"cannot build the tiny model in the cache '{cache_dir}': {error.strerror or error}",
            "set VIDGEN_CACHE to a folder of yours that you can write",
        ) from None


def tiny_folder(family: str, variant: str, cache_dir: Path | None = None, seed: int = 0) -> Path:
    """Where `ensure_tiny` builds (or has built) a tiny model."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return cache_dir / "tiny" / f"{family}-{variant}-seed{seed}-v{BUILDER_VERSION}"


def is_built(family: str, variant: str, cache_dir: Path | None = None, seed: int = 0) -> bool:
    """Whether the tiny model is in the cache already (a build is only ever renamed in when whole)."""
    return (tiny_folder(family, variant, cache_dir, seed) / "model_index.json").is_file()


def _ensure_tiny(
    family: str, build: Callable[[Path, str, int], Path], variant: str, cache_dir: Path, seed: int
) -> Path:
    target = tiny_folder(family, variant, cache_dir, seed)
    remove_stale_folders(target.parent, ".building-")  # builds that a killed process left
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    hold = Hold(staging)  # ours while this process lives: another one's cleanup leaves it alone
    try:
        build(staging, variant, seed)
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

"""Tiny random-weight models laid out exactly as the published checkpoints are, in a Hugging Face cache.

`vidgen.weights.tiny` writes folders the way today's diffusers and transformers save them (one weights file
each, a `tokenizer.json`). The published repos look different, and users' caches hold those: weights
in shards with an index, configs written by older releases (`torch_dtype`, `dropout_rate` 0.1) and, for
CogVideoX, the older T5 tokenizer set (`spiece.model` and three JSON files, no `tokenizer.json`). Tests
build these layouts here to load every preset's family the way a fresh install meets it.
"""

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vidgen.families import registry
from vidgen.weights import tiny

# A commit id for the fake snapshots (any 40 hex digits; the hub's are git commit ids).
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# The older T5 tokenizer set: sentinel tokens follow the sentencepiece vocabulary (T5 has 100).
EXTRA_IDS = 3


@dataclass(frozen=True)
class Layout:
    """How one published repo stores its files (shard counts from the repos' index files)."""

    repo_id: str
    tiny_variant: tuple[str, str]  # (family, variant) of vidgen.weights.tiny with the same architecture
    text_encoder_shards: int
    transformer_shards: int
    older_tokenizer: (
        bool  # spiece.model + added_tokens/special_tokens_map/tokenizer_config, no tokenizer.json
    )
    tokenizer_class: str  # as model_index.json names it
    transformer_dtype: torch.dtype = torch.bfloat16
    text_encoder_dtype: torch.dtype = torch.float32
    diffusers_version: str = "0.30.0"  # the release that wrote model_index.json
    # Wan 2.2 A14B: the second (low-noise) expert, sharded as the first.
    transformer_2: bool = False
    # Wan 2.1 I2V: the CLIP image encoder's dtype (one file, as the repos ship it); None: no encoder.
    image_encoder_dtype: torch.dtype | None = None


PUBLISHED: dict[str, Layout] = {
    "cogvideox-2b": Layout(
        "THUDM/CogVideoX-2b", ("cogvideox", "t2v"), 2, 1, True, "T5Tokenizer", torch.float16
    ),
    "cogvideox-5b": Layout("THUDM/CogVideoX-5b", ("cogvideox", "rotary-t2v"), 2, 2, True, "T5Tokenizer"),
    "cogvideox-5b-i2v": Layout("THUDM/CogVideoX-5b-I2V", ("cogvideox", "i2v"), 2, 3, True, "T5Tokenizer"),
    "cogvideox1.5-5b": Layout("THUDM/CogVideoX1.5-5B", ("cogvideox", "1.5-t2v"), 4, 3, True, "T5Tokenizer"),
    "cogvideox1.5-5b-i2v": Layout(
        "THUDM/CogVideoX1.5-5B-I2V", ("cogvideox", "1.5-i2v"), 4, 3, True, "T5Tokenizer"
    ),
    "helios-base": Layout("BestWishYsh/Helios-Base", ("helios", "base"), 5, 6, False, "T5TokenizerFast"),
    "helios-mid": Layout("BestWishYsh/Helios-Mid", ("helios", "mid"), 5, 6, False, "T5TokenizerFast"),
    "helios-distilled": Layout(
        "BestWishYsh/Helios-Distilled", ("helios", "distilled"), 5, 6, False, "T5TokenizerFast"
    ),
    # Wan-AI's diffusers repos: the 2.1 ones (diffusers 0.33.0.dev0) hold the text encoder in fp32 in 5
    # shards, the transformers in fp32 (1.3B: 2 shards, 14B: 12, I2V 14B: 14) and the CLIP image encoder
    # in half precision in one file; the 2.2 ones (0.35.0.dev0) the text encoder in bf16 in 3 shards and
    # each fp32 expert in 12 shards (TI2V-5B's 20 GB transformer in 5). Tiny variants: see wan_source.
    **{
        name: Layout(
            f"Wan-AI/{repo}-Diffusers",
            ("wan", variant),
            text_shards,
            shards,
            False,
            "T5TokenizerFast",
            torch.float32,
            torch.float32 if version == "2.1" else torch.bfloat16,
            "0.33.0.dev0" if version == "2.1" else "0.35.0.dev0",
            transformer_2=variant.startswith("a14b"),
            image_encoder_dtype=torch.bfloat16 if variant == "i2v" else None,
        )
        for name, repo, variant, text_shards, shards, version in (
            ("wan2.1-t2v-1.3b", "Wan2.1-T2V-1.3B", "t2v", 5, 2, "2.1"),
            ("wan2.1-t2v-14b", "Wan2.1-T2V-14B", "t2v", 5, 12, "2.1"),
            ("wan2.1-i2v-14b-480p", "Wan2.1-I2V-14B-480P", "i2v", 5, 14, "2.1"),
            ("wan2.1-i2v-14b-720p", "Wan2.1-I2V-14B-720P", "i2v", 5, 14, "2.1"),
            ("wan2.2-t2v-a14b", "Wan2.2-T2V-A14B", "a14b-t2v", 3, 12, "2.2"),
            ("wan2.2-i2v-a14b", "Wan2.2-I2V-A14B", "a14b-i2v", 3, 12, "2.2"),
            ("wan2.2-ti2v-5b", "Wan2.2-TI2V-5B", "ti2v", 3, 5, "2.2"),
        )
    },
}


def write_published(folder: Path, preset: str, cache_dir: Path | None = None) -> Path:
    """Write the published layout of `preset` with tiny weights into `folder`; returns it."""
    layout = PUBLISHED[preset]
    folder = Path(folder)
    if layout.tiny_variant[0] == "wan" and layout.tiny_variant[1] != "t2v":
        source = wan_source(folder.parent / f".{folder.name}-source", layout.tiny_variant[1])
    else:
        source = registry.ensure_tiny(*layout.tiny_variant, cache_dir=cache_dir)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors", "tokenizer"))
    shutil.copy(source / "vae" / "diffusion_pytorch_model.safetensors", folder / "vae")
    write_shards(
        source / "text_encoder" / "model.safetensors",
        folder / "text_encoder",
        "model",
        layout.text_encoder_shards,
        layout.text_encoder_dtype,
    )
    for transformer in ("transformer", "transformer_2") if layout.transformer_2 else ("transformer",):
        write_shards(
            source / transformer / "diffusion_pytorch_model.safetensors",
            folder / transformer,
            "diffusion_pytorch_model",
            layout.transformer_shards,
            layout.transformer_dtype,
        )
    if layout.image_encoder_dtype is not None:
        write_shards(
            source / "image_encoder" / "model.safetensors",
            folder / "image_encoder",
            "model",
            1,
            layout.image_encoder_dtype,
        )
    _age_text_encoder_config(folder / "text_encoder" / "config.json", layout.text_encoder_dtype)
    if layout.older_tokenizer:
        write_older_t5_tokenizer(folder / "tokenizer", model_max_length=226)
    else:
        shutil.copytree(source / "tokenizer", folder / "tokenizer")
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["tokenizer"] = ["transformers", layout.tokenizer_class]
    index["_diffusers_version"] = layout.diffusers_version
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return folder


def write_shards(weights: Path, folder: Path, stem: str, shards: int, dtype: torch.dtype) -> None:
    """One safetensors file as `shards` files plus the index naming each tensor's file, as
    transformers and diffusers save large models (one file keeps the unsharded name)."""
    tensors = {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor
        for name, tensor in load_file(weights).items()
    }
    if shards == 1:
        save_file(tensors, folder / f"{stem}.safetensors", metadata={"format": "pt"})
        return
    names = sorted(tensors)
    weight_map, total = {}, 0
    for number in range(shards):
        part = names[number * len(names) // shards : (number + 1) * len(names) // shards]
        file_name = f"{stem}-{number + 1:05d}-of-{shards:05d}.safetensors"
        save_file({name: tensors[name] for name in part}, folder / file_name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file_name))
        total += sum(tensors[name].numel() * tensors[name].element_size() for name in part)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _age_text_encoder_config(path: Path, dtype: torch.dtype = torch.float32) -> None:
    """The text encoder config as transformers 4.44 wrote it: `torch_dtype`, and dropout on."""
    config = json.loads(path.read_text())
    config.pop("dtype", None)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    config["dropout_rate"] = 0.1  # so a text encoder left in training mode would give noisy outputs
    config["transformers_version"] = "4.44.0"
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_older_t5_tokenizer(folder: Path, model_max_length: int) -> None:
    """The tokenizer files the CogVideoX repos ship: a sentencepiece model trained here (offline, on
    vidgen.weights.tiny's word list) and the JSON files transformers 4.44 wrote beside it."""
    import sentencepiece

    words = list(dict.fromkeys(tiny._WORDS))
    sentences = [" ".join(words[start : start + 7]) for start in range(0, len(words), 3)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 5),
        model_writer=model,
        vocab_size=120,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    pieces = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    sentinels = [f"<extra_id_{number}>" for number in range(EXTRA_IDS)]
    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    added = {token: pieces + EXTRA_IDS - 1 - number for number, token in enumerate(sentinels)}
    files = {
        "added_tokens.json": added,
        "special_tokens_map.json": {"additional_special_tokens": sentinels, **specials},
        "tokenizer_config.json": {
            "additional_special_tokens": sentinels,
            **specials,
            "clean_up_tokenization_spaces": True,
            "extra_ids": EXTRA_IDS,
            "legacy": True,
            "model_max_length": model_max_length,
            "sp_model_kwargs": {},
            "tokenizer_class": "T5Tokenizer",
        },
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2) + "\n")


def write_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT) -> Path:
    """Put `folder` into a Hugging Face cache as the hub client does: content in blobs/, the snapshot
    as relative links to them, refs/main naming the commit. Returns the snapshot folder."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(link.relative_to(snapshot).parts) + 1)) / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def cache_published(cache: Path, preset: str, work: Path, repo_id: str | None = None) -> Path:
    """The published layout of `preset` in the hub cache `cache` (built in `work`); returns the snapshot."""
    layout = PUBLISHED[preset]
    folder = write_published(Path(work) / preset, preset)
    return write_hub_cache(cache, repo_id or layout.repo_id, folder)


# The Wan repos whose pipelines vidgen's tiny builder has no variant for, as (pipeline class, the
# transformer's config beside the tiny 2.1 T2V one, extra model_index.json entries). The image-to-video
# transformers take 16 noise + 4 mask + 16 image latent channels; 2.1 I2V's CLIP embeddings enter an extra
# cross-attention (`added_kv_proj_dim`: the inner width).
WAN_HUB_VARIANTS = {
    "i2v": ("WanImageToVideoPipeline", dict(in_channels=36, image_dim=16, added_kv_proj_dim=24), {}),
    "a14b-t2v": ("WanPipeline", {}, {"boundary_ratio": 0.875, "expand_timesteps": False}),
    "a14b-i2v": (
        "WanImageToVideoPipeline",
        dict(in_channels=36),
        {"boundary_ratio": 0.9, "expand_timesteps": False, "image_encoder": [None, None],
         "image_processor": [None, None]},
    ),
    "ti2v": (
        "WanPipeline",
        dict(in_channels=48, out_channels=48),
        {"boundary_ratio": None, "expand_timesteps": True, "transformer_2": [None, None]},
    ),
}  # fmt: skip


def wan_source(folder: Path, variant: str, seed: int = 0) -> Path:
    """A tiny Wan 2.1 I2V, 2.2 A14B or 2.2 TI2V folder in diffusers' format (once per folder), named
    as the published repos name their parts; the tiny 2.1 T2V model's configs otherwise."""
    import diffusers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    from vidgen.families.wan.tiny import WAN22_VAE, WAN_SCHEDULER, WAN_TRANSFORMER
    from vidgen.weights.tiny import WAN_VAE, build_tokenizer, t5_config, write_pipeline

    if (folder / "model_index.json").is_file():
        return folder
    pipeline, transformer, extra = WAN_HUB_VARIANTS[variant]
    ti2v = variant == "ti2v"
    scheduler = {**WAN_SCHEDULER, "flow_shift": 5.0 if ti2v else 3.0}  # the repos' own shifts
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**t5_config())),
        "transformer": lambda: diffusers.WanTransformer3DModel(**{**WAN_TRANSFORMER, **transformer}),
        "vae": lambda: diffusers.AutoencoderKLWan(**(WAN22_VAE if ti2v else WAN_VAE)),
        "scheduler": lambda: diffusers.UniPCMultistepScheduler(**scheduler),
    }
    if variant.startswith("a14b"):
        components["transformer_2"] = components["transformer"]
    if variant == "i2v":
        clip = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2)
        components["image_encoder"] = lambda: CLIPVisionModel(
            CLIPVisionConfig(**clip, image_size=32, patch_size=8, projection_dim=16)
        )
        components["image_processor"] = lambda: CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    write_pipeline(folder, pipeline, components, extra, seed)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    if variant == "i2v":  # the published names (transformers without torchvision saves a "Pil" class)
        index["image_encoder"] = ["transformers", "CLIPVisionModel"]
        index["image_processor"] = ["transformers", "CLIPImageProcessor"]
        processor_path = folder / "image_processor" / "preprocessor_config.json"
        processor = json.loads(processor_path.read_text())
        processor["image_processor_type"] = "CLIPImageProcessor"
        processor_path.write_text(json.dumps(processor, indent=2) + "\n")
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return folder

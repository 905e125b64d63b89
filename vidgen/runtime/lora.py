"""LoRA adapters: `--lora PATH_OR_REPO[:SCALE]` found, checked against the model, and fused into it.

A model of two experts (Wan 2.2 A14B) takes `--lora high=...` into its high-noise transformer and
`--lora low=...` into the low-noise one, as the published distill LoRAs come in pairs; a plain `--lora`
goes into both (diffusers' users load such a file twice, the second time `load_into_transformer_2`).

The files are read by diffusers' LoRA loaders (`CogVideoXLoraLoaderMixin`, `HeliosLoraLoaderMixin`),
which convert the layouts other trainers share into diffusers' PEFT keys; PEFT then injects and merges
them. Fused, the weights are folded into the transformer's own linear layers and the PEFT wrappers are
removed, so generation runs at the base model's speed whatever the number of LoRAs. A fused LoRA does
not come out exactly (subtracting rounds), so another set means reloading the transformer.
"""

import hashlib
import math
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.core.family import Family
from vidgen.core.request import Lora, dtype_name

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
PREFIX = "transformer."
# A scale is a trailing ":number" only: a path may hold colons of its own.
SCALED = re.compile(r"(?P<source>.+):(?P<scale>[^:/]*)")
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
EXPERTS = ("high", "low")  # a two-expert model's transformer and transformer_2, in that order
EXPERT = re.compile(r"(?P<expert>high|low)=(?P<rest>.+)")
HINT = "pass a .safetensors LoRA file, a folder holding pytorch_lora_weights.safetensors, or a hub repo id"


def parse_lora(text: str) -> tuple[str, float]:
    """(path or repo, scale) from `PATH_OR_REPO[:SCALE]`; the scale defaults to 1.0."""
    match = SCALED.fullmatch(text)
    if match is None or Path(text).expanduser().exists():
        return text, 1.0
    source, scale_text = match["source"], match["scale"]
    try:
        scale = float(scale_text)
    except ValueError:
        raise VidgenError(
            f"--lora '{text}': scale '{scale_text}' is not a number",
            "write PATH_OR_REPO:SCALE, e.g. style:0.8",
        ) from None
    if not math.isfinite(scale):
        raise VidgenError(f"--lora '{text}': scale {scale_text} is not a finite number", "e.g. style:0.8")
    return source, scale


def split_expert(text: str) -> tuple[str, str]:
    """("high" or "low", PATH_OR_REPO[:SCALE]) from `high=PATH_OR_REPO[:SCALE]`; ("", text) without
    the prefix (or where a file is named so)."""
    match = EXPERT.fullmatch(text)
    if match is None or Path(text).expanduser().exists():
        return "", text
    return match["expert"], match["rest"]


def for_expert(loras: tuple[Lora, ...], expert: str) -> tuple[Lora, ...]:
    """The LoRAs one transformer takes: those for every transformer, and those named for `expert`
    ("high", "low"; "" for a model's only transformer)."""
    return tuple(lora for lora in loras if lora.expert in ("", expert))


def locate(source: str) -> Path:
    """The LoRA's safetensors file: as given, inside a folder, or in the hub cache (fetched if not)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return (path / WEIGHTS_NAME).resolve()
        raise VidgenError(f"--lora '{source}': the folder holds no {WEIGHTS_NAME}", HINT)
    # A file name is a path, even where it looks like owner/repo (lora/style.safetensors).
    if REPO_ID.fullmatch(source) and not source.startswith((".", "/", "~")) and path.suffix != ".safetensors":
        return _from_hub(source)
    raise VidgenError(f"--lora '{source}': no such file or folder", HINT)


def _from_hub(repo_id: str) -> Path:
    """The repo's LoRA file from the hub cache, downloading only that file when the cache lacks it."""
    from vidgen.weights import hub

    snapshot = hub.cached_snapshot(repo_id)
    if snapshot is not None and (snapshot / WEIGHTS_NAME).is_file():
        return snapshot / WEIGHTS_NAME
    try:
        return _download(repo_id)
    except hub.HubUnreachable as error:
        retry = "unset HF_HUB_OFFLINE and run again" if hub.offline_flag() else "run again once online"
        raise VidgenError(
            f"--lora '{repo_id}' is not in the cache at {hub.cache_root()} and cannot be downloaded: "
            f"{error.why}",
            f"{retry}, or pass a local file: --lora /path/to/lora.safetensors",
        ) from None


def _download(repo_id: str) -> Path:
    from vidgen.weights import hub
    from vidgen.weights.download_progress import DownloadProgress

    command = f"vidgen t2v --lora {repo_id} ..."
    _, commit, files = hub.list_files(repo_id, command)
    chosen = [file for file in files if file.path == WEIGHTS_NAME]
    if not chosen:
        top = [file for file in files if "/" not in file.path and file.path.endswith(".safetensors")]
        if len(top) != 1:
            raise VidgenError(f"--lora '{repo_id}': the repo holds no {WEIGHTS_NAME}", HINT)
        chosen = top
    with DownloadProgress() as progress:
        progress.begin(repo_id, chosen, chosen)
        return hub.fetch_file(repo_id, commit, chosen[0], progress.file(chosen[0]), command)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lora(path: Path, transformer_class: type) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The transformer's LoRA tensors with `transformer.`-prefixed PEFT keys, and their metadata
    (rank, alpha) where the file has it; other trainers' layouts converted by diffusers' loader."""
    from vidgen.weights.model_check import read_header

    read_header(path, HINT)  # a clear error for a file that is not safetensors
    options = {"weight_name": path.name, "use_safetensors": True, "local_files_only": True}
    state, metadata = _loader(transformer_class).lora_state_dict(
        str(path.parent), return_lora_metadata=True, **options
    )
    if not any(key.startswith(PREFIX) for key in state):
        state = {PREFIX + key: value for key, value in state.items()}  # saved without the prefix
    return state, metadata


def _loader(transformer_class: type) -> type:
    """diffusers' LoRA loader mixin whose converters read LoRAs for `transformer_class` (each of
    vidgen's transformers names it, as `lora_loader`)."""
    import diffusers.loaders

    return getattr(diffusers.loaders, transformer_class.lora_loader)


def targets(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Module name -> (in features, out features) the LoRA was trained for, from its A and B matrices."""
    return {
        module: (pair["A"][1] if "A" in pair else 0, pair["B"][0] if "B" in pair else 0)
        for module, pair in matrices(state).items()
    }


def matrices(state: dict[str, torch.Tensor]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Module name -> the shapes of its LoRA's A ([rank, in]) and B ([out, rank]) matrices."""
    from diffusers.utils import convert_unet_state_dict_to_peft

    state = {key.removeprefix(PREFIX): value for key, value in state.items() if key.startswith(PREFIX)}
    if state and "lora_A" not in next(iter(state)):
        state = convert_unet_state_dict_to_peft(state)  # as diffusers' load_lora_adapter does
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, value in state.items():
        module, _, rest = key.partition(".lora_")
        if rest.startswith(("A.", "B.")) and value.ndim == 2:
            shapes.setdefault(module, {})[rest[0]] = tuple(value.shape)
    return shapes


def check_matrices(state: dict[str, torch.Tensor], source: str) -> None:
    """Each layer has both matrices, of one rank: PEFT would fail on them only after the model loads."""
    for module, pair in matrices(state).items():
        if len(pair) < 2:
            have, lack = ("A", "B") if "A" in pair else ("B", "A")
            raise VidgenError(
                f"--lora '{source}' is broken: {module} has a lora_{have} matrix but no lora_{lack}",
                "use another LoRA file (or export this one again)",
            )
        if pair["A"][0] != pair["B"][1]:
            raise VidgenError(
                f"--lora '{source}' is broken: {module}'s lora_A has rank {pair['A'][0]}, its lora_B "
                f"rank {pair['B'][1]}",
                "use another LoRA file (or export this one again)",
            )


def check_values(state: dict[str, torch.Tensor], source: str, dtype: torch.dtype) -> None:
    """Every LoRA number is finite and fits `dtype`, the run's: a NaN or an overflow fused into the
    transformer makes every frame NaN, which a video writer turns into black."""
    for key, value in state.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        if not torch.isfinite(value).all():
            raise VidgenError(
                f"--lora '{source}' holds NaN or infinite numbers ({key.removeprefix(PREFIX)})",
                "the file is broken: use another LoRA (or export this one again)",
            )
        largest = value.abs().max().item()
        if largest > torch.finfo(dtype).max:
            raise VidgenError(
                f"--lora '{source}' holds numbers too large for {dtype_name(dtype)} "
                f"({key.removeprefix(PREFIX)} reaches {largest:.3g}, past {torch.finfo(dtype).max:.3g})",
                "run in --dtype bf16 or fp32, or use another LoRA",
            )


def check_lora(
    text: str,
    family: Family,
    config_folder: Path,
    notes: list[str],
    dtype: torch.dtype = torch.float32,
    experts: int = 1,
) -> Lora:
    """`--lora TEXT` found, read and matched against the transformer `config_folder` describes (built
    on the meta device: no weights load) and the run's `dtype`; raises VidgenError, notes a LoRA that
    matches only part. With two `experts`, `high=` / `low=` names the transformer it goes into."""
    expert, rest = split_expert(text)
    if expert and experts < 2:
        raise VidgenError(
            f"--lora '{text}' names the {expert}-noise expert, but this model has one transformer",
            f"drop '{expert}=': --lora {rest}",
        )
    source, scale = parse_lora(rest)
    path = locate(source)
    state, _ = read_lora(path, family.transformer())
    check_values(state, source, dtype)
    check_matrices(state, source)
    wanted = targets(state)
    # The experts of one model share a config; each is checked against its own all the same.
    parts = ["transformer", "transformer_2"][:experts]
    for part in [parts[EXPERTS.index(expert)]] if expert else parts:
        _check_layers(
            wanted, _linear_layers(family.transformer(), config_folder, part), source, family, notes
        )
    if experts > 1 and not expert:
        notes.append(f"LoRA '{source}' goes into both experts; --lora high=... or low=... puts a LoRA in one")
    return Lora(source=source, path=str(path), scale=scale, sha256=sha256(path), expert=expert)


def _check_layers(
    wanted: dict[str, tuple[int, int]],
    layers: dict[str, tuple[int, int]],
    source: str,
    family: Family,
    notes: list[str],
) -> None:
    """The LoRA's layers are the transformer's (some at least), each of the transformer's width."""
    matched = [name for name in wanted if name in layers]
    if not matched:
        example = next(iter(wanted), "no LoRA tensors at all")
        raise VidgenError(
            f"--lora '{source}' matches none of this {family.name} transformer's layers "
            f"(it names '{example}')",
            "use a LoRA trained for this model family",
        )
    for name in matched:
        (lora_in, lora_out), (model_in, model_out) = wanted[name], layers[name]
        if (lora_in, lora_out) != (model_in, model_out):
            raise VidgenError(
                f"--lora '{source}' was trained for a model of another width: {name} is "
                f"{lora_in}->{lora_out} features in the LoRA, {model_in}->{model_out} here",
                "use a LoRA trained for this model (same family and size)",
            )
    note = f"LoRA '{source}' matches {len(matched)} of its {len(wanted)} layers in this model"
    if len(matched) < len(wanted) and note not in notes:  # once for the two experts
        notes.append(note)


def _linear_layers(cls: type, config_folder: Path, part: str = "transformer") -> dict[str, tuple[int, int]]:
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(cls.load_config(config_folder / part))
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }


def fuse_loras(transformer: nn.Module, loras: tuple[Lora, ...]) -> nn.Module:
    """Fold `loras`, each at its scale, into a just-loaded `transformer` (before quantizing or placing).

    q/k/v fused into one projection are split for the merge and fused again after, so LoRAs trained on
    to_q/to_k/to_v land in the fused weight. Returns the transformer; `transformer.vidgen_loras` says
    which set it holds.
    """
    if not loras:
        transformer.vidgen_loras = ()
        return transformer
    fused_qkv = any(name.endswith((".to_qkv", ".to_kv")) for name, _ in transformer.named_modules())
    if fused_qkv:
        transformer.unfuse_qkv_projections()
    names = [f"lora{index}" for index in range(len(loras))]
    for name, lora in zip(names, loras, strict=True):
        state, metadata = read_lora(Path(lora.path), type(transformer))
        with warnings.catch_warnings():  # PEFT warns that a second adapter is a second adapter
            warnings.simplefilter("ignore", UserWarning)
            transformer.load_lora_adapter(state, prefix=PREFIX[:-1], metadata=metadata, adapter_name=name)
    transformer.set_adapters(names, [lora.scale for lora in loras])
    try:
        # Safe fusing checks each merged weight: finite LoRA numbers whose product (times the scale)
        # overflows the dtype would otherwise make every frame NaN.
        transformer.fuse_lora(adapter_names=names, safe_fusing=True)
    except ValueError as error:  # PEFT's words: "NaNs detected ... The adapter lora0 seems to be broken"
        if "NaNs detected" not in str(error):
            raise
        raise overflowed(transformer, names, loras, str(error)) from None
    transformer.unload_lora()  # the merged weights stay; the PEFT wrappers (and their cost) go
    if fused_qkv:
        transformer.fuse_qkv_projections()
    transformer.vidgen_loras = loras
    return transformer


def overflowed(transformer: nn.Module, names: list[str], loras: tuple[Lora, ...], error: str) -> VidgenError:
    """The error for a LoRA whose fused weights are not finite numbers in the transformer's dtype."""
    lora = next((lora for name, lora in zip(names, loras, strict=True) if f" {name} " in error), loras[0])
    return VidgenError(
        f"--lora '{lora.source}' at scale {lora.scale:g} fused into the transformer gives weights past "
        f"{dtype_name(transformer.dtype)}'s range (or NaN)",
        "use a smaller scale, --dtype bf16 or fp32, or another LoRA",
    )

"""Is a model folder whole? Checked from its JSON files and safetensors headers, before any weight loads.

A cache left by an interrupted download, a truncated file, a pickled-only checkpoint or a component
of a class vidgen does not run would otherwise fail minutes into loading with a library traceback;
here each is one VidgenError naming the subfolder and file, with `repair` (how to fix it) as the hint.
"""

import json
import struct
from pathlib import Path

from vidgen.errors import VidgenError
from vidgen.model_info import detect_family

# The classes vidgen runs, per family and component (model_index.json and each component's own file).
CLASSES: dict[str, dict[str, tuple[str, ...]]] = {
    "cogvideox": {
        "tokenizer": ("T5Tokenizer", "T5TokenizerFast"),
        "text_encoder": ("T5EncoderModel",),
        "transformer": ("CogVideoXTransformer3DModel",),
        "vae": ("AutoencoderKLCogVideoX",),
        "scheduler": ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"),
    },
    "helios": {
        "tokenizer": ("T5Tokenizer", "T5TokenizerFast", "AutoTokenizer"),
        "text_encoder": ("UMT5EncoderModel",),
        "transformer": ("HeliosTransformer3DModel",),
        "vae": ("AutoencoderKLWan",),
        "scheduler": ("HeliosScheduler", "HeliosDMDScheduler"),
    },
}

# Where each component names its own class: (file, key).
CLASS_KEYS = {
    "tokenizer": ("tokenizer_config.json", "tokenizer_class"),
    "text_encoder": ("config.json", "architectures"),
    "transformer": ("config.json", "_class_name"),
    "vae": ("config.json", "_class_name"),
    "scheduler": ("scheduler_config.json", "_class_name"),
}

# The weights file stem each weighted component saves under (transformers / diffusers naming).
WEIGHTS = {
    "text_encoder": "model",
    "transformer": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
}

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")

# A safetensors header is JSON of at most 100 MB (the format's own limit).
MAX_HEADER = 100_000_000


def check_configs(folder: Path, repair: str, tokenizer_files: bool = True) -> str:
    """Every JSON file the model needs parses and names a class vidgen runs; returns the family.
    `tokenizer_files`: also check the tokenizer's vocabulary file is there (not a JSON file)."""
    family = detect_family(folder)
    index = read(folder, "model_index.json", repair)
    for component, allowed in CLASSES[family].items():
        entry = index.get(component)
        if not isinstance(entry, list) or len(entry) != 2:
            raise VidgenError(f"'{folder / 'model_index.json'}' names no {component}", repair)
        check_class(entry[1], allowed, folder / "model_index.json", component)
        if not (folder / component).is_dir():
            raise VidgenError(f"'{folder}' has no {component}/ folder: the model is incomplete", repair)
        file_name, key = CLASS_KEYS[component]
        if component == "tokenizer" and not (folder / component / file_name).is_file():
            continue  # a tokenizer.json alone is a complete tokenizer; its class comes from model_index
        named = read(folder / component, file_name, repair).get(key)
        check_class(
            named[0] if isinstance(named, list) and named else named,
            allowed,
            folder / component / file_name,
            component,
        )
    if tokenizer_files:
        check_tokenizer_files(folder / "tokenizer", repair)
    return family


def check_class(name: object, allowed: tuple[str, ...], path: Path, component: str) -> None:
    if name not in allowed:
        raise VidgenError(
            f"'{path}' names {component} class {name!r}, which vidgen does not run",
            f"use a model whose {component} is {' or '.join(allowed)}",
        )


def check_tokenizer_files(folder: Path, repair: str) -> None:
    """A tokenizer.json, or the older sentencepiece set (which transformers converts with protobuf)."""
    if (folder / "tokenizer.json").is_file():
        return
    if not (folder / "spiece.model").is_file():
        raise VidgenError(f"'{folder}' holds neither tokenizer.json nor spiece.model", repair)
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        raise VidgenError(
            f"'{folder}' holds a sentencepiece tokenizer (spiece.model), which needs the protobuf package",
            "pip install protobuf (a dependency of vidgen: reinstall vidgen)",
        ) from None


def read(folder: Path, name: str, repair: str) -> dict:
    """A JSON file of the model; a missing or broken one is an error naming it."""
    path = folder / name
    if not path.is_file():
        raise VidgenError(f"'{path}' is missing: the model is incomplete", repair)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VidgenError(f"'{path}' is not valid JSON ({error})", repair) from None
    if not isinstance(content, dict):
        raise VidgenError(f"'{path}' is not a JSON object", repair)
    return content


def weight_files(folder: Path, component: str, repair: str) -> list[Path]:
    """The safetensors files of one component: the index's shards, or the one file."""
    directory, stem = folder / component, WEIGHTS[component]
    index_path = directory / f"{stem}.safetensors.index.json"
    if index_path.is_file():
        weight_map = read(directory, index_path.name, repair).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise VidgenError(f"'{index_path}' has no weight_map: the index is broken", repair)
        files = [directory / name for name in sorted(set(weight_map.values()))]
        for path in files:
            if not path.is_file():
                message = f"'{path}' is missing (named by {index_path.name}): the model is incomplete"
                raise VidgenError(message, repair)
        return files
    single = directory / f"{stem}.safetensors"
    if single.is_file():
        return [single]
    pickled = sorted(p.name for p in directory.glob("*") if p.suffix in PICKLED_SUFFIXES)
    if pickled:
        raise VidgenError(
            f"'{directory}' holds only pickled weights ({', '.join(pickled)}); vidgen loads safetensors "
            "only and never unpickles (a pickle can run code when read)",
            f"get the safetensors files: {repair}",
        )
    raise VidgenError(f"'{directory}' holds no {stem}.safetensors: the model is incomplete", repair)


def read_header(path: Path, repair: str) -> dict[str, tuple[str, list[int]]]:
    """A safetensors file's tensors (name -> dtype, shape), checking the file holds all their bytes."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > min(MAX_HEADER, size - 8):
                raise ValueError("header length past the end of the file")
            header = json.loads(file.read(length))
        if not isinstance(header, dict):  # `null`, a list, a number: JSON, but no tensor table
            raise ValueError(f"its header is {json.dumps(header)[:40]}, not a JSON object")
        header.pop("__metadata__", None)
        tensors = {name: (entry["dtype"], list(entry["shape"])) for name, entry in header.items()}
        end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    except (OSError, ValueError, KeyError, TypeError, RecursionError, struct.error) as error:
        raise VidgenError(f"'{path}' is not a readable safetensors file ({error})", repair) from None
    if 8 + length + end > size:
        raise VidgenError(
            f"'{path}' is truncated ({size} of {8 + length + end} bytes): an interrupted download?", repair
        )
    return tensors


def check_weights(folder: Path, repair: str) -> dict[str, dict[str, tuple[str, list[int], Path]]]:
    """Every weights file is present and whole; returns each component's tensors (dtype, shape, file)."""
    components = {}
    for component in WEIGHTS:
        tensors = {}
        for path in weight_files(folder, component, repair):
            tensors.update({name: (*entry, path) for name, entry in read_header(path, repair).items()})
        components[component] = tensors
    return components


def check_shapes(folder: Path, family: str, tensors: dict, repair: str) -> None:
    """Each tensor has the shape the component's config implies (a model built on the meta device)."""
    for component, expected in expected_shapes(folder, family).items():
        for name, (_, shape, path) in tensors[component].items():
            if name in expected and list(expected[name]) != shape:
                raise VidgenError(
                    f"'{path}' holds {name} of shape {shape}, but {component}/config.json implies "
                    f"{list(expected[name])}: the weights do not belong to this config",
                    repair,
                )


def expected_shapes(folder: Path, family: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The parameter shapes of each weighted component, from its config alone (no memory used)."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    shapes = {}
    with init_empty_weights():
        config_class = transformers.AutoConfig.from_pretrained(folder / "text_encoder")
        encoder_class = getattr(transformers, CLASSES[family]["text_encoder"][0])
        models = {"text_encoder": encoder_class(config_class)}
        for component in ("transformer", "vae"):
            cls = getattr(diffusers, CLASSES[family][component][0])
            models[component] = cls.from_config(cls.load_config(folder / component))
    for component, model in models.items():
        shapes[component] = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    return shapes


def check_model(folder: Path, repair: str) -> None:
    """The whole check: configs, classes, tokenizer files, weights present and whole, shapes."""
    family = check_configs(folder, repair)
    tensors = check_weights(folder, repair)
    check_shapes(folder, family, tensors, repair)

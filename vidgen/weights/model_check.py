"""Is a model folder whole? Checked from its JSON files and safetensors headers, before any weight loads.

A cache left by an interrupted download, a truncated file, a pickled-only checkpoint or a component
of a class vidgen does not run would otherwise fail minutes into loading with a library traceback;
here each is one VidgenError naming the subfolder and file, with `repair` (how to fix it) as the hint.
"""

import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import json_kind

# A folder -> the classes its family runs, per component (the registry's answer, passed down). The
# tokenizer is not among them: it may be any class transformers loads (see `check_tokenizer_class`),
# since the text encoder's vocabulary, not the class, is what the model depends on. A component whose
# classes include None is optional: a folder may go without it (no entry in model_index.json, or
# [null, null] as diffusers saves a pipeline's missing part: Wan 2.2 TI2V's `transformer_2`).
ClassesFor = Callable[[Path], Mapping[str, tuple[str | None, ...]]]

# Where each component names its own class: (file, key).
CLASS_KEYS = {
    "tokenizer": ("tokenizer_config.json", "tokenizer_class"),
    "text_encoder": ("config.json", "architectures"),
    "transformer": ("config.json", "_class_name"),
    "transformer_2": ("config.json", "_class_name"),
    "vae": ("config.json", "_class_name"),
    "scheduler": ("scheduler_config.json", "_class_name"),
    "image_encoder": ("config.json", "architectures"),
    "image_processor": ("preprocessor_config.json", "image_processor_type"),
}
# Components whose own file may leave its class unnamed (transformers then takes model_index.json's).
UNNAMED_OK = ("tokenizer", "image_processor")

# The weights file stem each weighted component saves under (transformers / diffusers naming).
WEIGHTS = {
    "text_encoder": "model",
    "transformer": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "transformer_2": "diffusion_pytorch_model",
    "image_encoder": "model",
}
# Every model has these; the others only where model_index.json names them (Wan 2.2 A14B, Wan 2.1 I2V).
REQUIRED_WEIGHTS = ("text_encoder", "transformer", "vae")

# Tokenizer classes every transformers release has (the released models' own).
COMMON_TOKENIZERS = ("T5Tokenizer", "T5TokenizerFast", "AutoTokenizer")

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")

# A safetensors header is JSON of at most 100 MB (the format's own limit).
MAX_HEADER = 100_000_000


def check_configs(
    folder: Path, repair: str, classes: Mapping[str, tuple[str, ...]], tokenizer_files: bool = True
) -> None:
    """Every JSON file the model needs parses and names a class vidgen runs (`classes`: component ->
    the classes its family runs). `tokenizer_files`: also check the tokenizer's vocabulary file is
    there (not a JSON file)."""
    index = read(folder, "model_index.json", repair)
    for component in ("tokenizer", *classes):
        entry = index.get(component)
        if None in classes.get(component, ()) and not names_part(index, component):
            continue  # an optional part this pipeline goes without
        if not isinstance(entry, list) or len(entry) != 2:
            raise VidgenError(f"'{folder / 'model_index.json'}' names no {component}", repair)
        check_component_class(entry[1], classes, folder / "model_index.json", component)
        if not (folder / component).is_dir():
            raise VidgenError(f"'{folder}' has no {component}/ folder: the model is incomplete", repair)
        file_name, key = CLASS_KEYS[component]
        if component == "tokenizer" and not (folder / component / file_name).is_file():
            continue  # a tokenizer.json alone is a complete tokenizer; its class comes from model_index
        named = read(folder / component, file_name, repair).get(key)
        if component in UNNAMED_OK and named is None:
            continue  # transformers then takes the class from the folder's other files
        check_component_class(
            named[0] if isinstance(named, list) and named else named,
            classes,
            folder / component / file_name,
            component,
        )
    if tokenizer_files:
        check_tokenizer_files(folder / "tokenizer", repair)


def names_part(index: dict, component: str) -> bool:
    """Whether model_index.json names a class for `component` (diffusers saves a missing part as
    [null, null])."""
    entry = index.get(component)
    return isinstance(entry, list) and any(value is not None for value in entry)


def check_component_class(
    name: object, classes: Mapping[str, tuple[str, ...]], path: Path, component: str
) -> None:
    if component == "tokenizer":
        check_tokenizer_class(name, path)
    else:
        check_class(name, classes[component], path, component)


def check_tokenizer_class(name: object, path: Path) -> None:
    """`name` is a tokenizer class transformers has (as AutoTokenizer resolves it: PreTrainedTokenizerFast
    is the generic tokenizers-backed class, saved by transformers 5 as TokenizersBackend)."""
    if name in COMMON_TOKENIZERS:
        return  # what the released models name: no need to import transformers to know them
    import transformers

    if tokenizer_class(name) is None:
        raise VidgenError(
            f"'{path}' names tokenizer class {name!r}, which transformers {transformers.__version__} "
            "does not have",
            "name a transformers tokenizer class (e.g. T5TokenizerFast), or re-save the tokenizer with "
            "save_pretrained",
        )


def tokenizer_class(name: object) -> type | None:
    """The transformers tokenizer class called `name` (AutoTokenizer included), else None."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if not isinstance(name, str) or not name:
        return None
    if name == "AutoTokenizer":
        return AutoTokenizer
    cls = tokenizer_class_from_name(name)  # falls back to any transformers attribute of that name
    return cls if isinstance(cls, type) and issubclass(cls, PreTrainedTokenizerBase) else None


def check_class(name: object, allowed: tuple[str | None, ...], path: Path, component: str) -> None:
    classes = [cls for cls in allowed if cls is not None]  # None marks an optional part, not a class
    if name not in classes:
        raise VidgenError(
            f"'{path}' names {component} class {name!r}, which vidgen does not run",
            f"use a model whose {component} is {' or '.join(classes)}",
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
    except RecursionError:  # thousands of nested brackets: no config is shaped so
        raise VidgenError(f"'{path}' is not a model config: its JSON is nested too deeply", repair) from None
    except (OSError, ValueError) as error:
        raise VidgenError(f"'{path}' is not valid JSON ({error})", repair) from None
    if not isinstance(content, dict):
        raise VidgenError(f"'{path}' is not a JSON object but a JSON {json_kind(content)}", repair)
    return content


def weight_files(folder: Path, component: str, repair: str) -> list[Path]:
    """The safetensors files of one component: the index's shards, or the one file."""
    # A second expert (Wan 2.2's transformer_2) is saved as the first.
    directory, stem = folder / component, WEIGHTS[component.removesuffix("_2")]
    index_path = directory / f"{stem}.safetensors.index.json"
    if index_path.is_file():
        weight_map = read(directory, index_path.name, repair).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise VidgenError(f"'{index_path}' has no weight_map: the index is broken", repair)
        if not all(isinstance(name, str) and name for name in weight_map.values()):
            raise VidgenError(f"'{index_path}' maps a tensor to no file name: the index is broken", repair)
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
        if not isinstance(header, dict):
            raise ValueError(f"its header is a JSON {json_kind(header)}, not an object")
        header.pop("__metadata__", None)
        tensors = {name: (entry["dtype"], list(entry["shape"])) for name, entry in header.items()}
        end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
        if not isinstance(end, int):
            raise ValueError(f"a tensor's data offset is {end!r}")
    except RecursionError:
        raise VidgenError(
            f"'{path}' is not a readable safetensors file (its header is nested too deeply)", repair
        ) from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as error:
        raise VidgenError(f"'{path}' is not a readable safetensors file ({error})", repair) from None
    if 8 + length + end > size:
        raise VidgenError(
            f"'{path}' is truncated ({size} of {8 + length + end} bytes): an interrupted download?", repair
        )
    return tensors


def check_weights(folder: Path, repair: str) -> dict[str, dict[str, tuple[str, list[int], Path]]]:
    """Every weights file is present and whole; returns each component's tensors (dtype, shape, file)
    for the required components and the optional ones model_index.json names."""
    index = read(folder, "model_index.json", repair)
    components = {}
    for component in (name for name in WEIGHTS if name in REQUIRED_WEIGHTS or names_part(index, name)):
        tensors = {}
        for path in weight_files(folder, component, repair):
            tensors.update({name: (*entry, path) for name, entry in read_header(path, repair).items()})
        components[component] = tensors
    return components


def check_layer_counts(folder: Path, tensors: dict, repair: str) -> None:
    """A config's layer count is no more than the blocks its weights hold: checked from the headers
    before a model is built from the config, which for `num_layers: 1000000000` would never finish."""
    for component in tensors:
        path = folder / component / CLASS_KEYS[component][0]
        config = read(folder / component, path.name, repair)
        held = blocks_held(tensors[component])
        for key in LAYER_COUNTS:
            count = config.get(key)
            if key in config and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
                raise VidgenError(f"'{path}': {key} is {count!r}, not a number of layers", repair)
            if key in config and count > held:
                raise VidgenError(
                    f"'{path}' says {key} {count}, but the {component} weights hold {held} blocks: the "
                    "config does not belong to these weights",
                    repair,
                )


# The config keys that say how many blocks a model builds (diffusers' and transformers' names).
LAYER_COUNTS = ("num_layers", "num_hidden_layers")


def blocks_held(tensors: dict) -> int:
    """The most entries of any numbered list of modules in the tensor names (`blocks.41.attn.weight`
    and 41 others under `blocks`: 42)."""
    lists: dict[str, set[str]] = {}
    for name in tensors:
        parts = name.split(".")
        for position, part in enumerate(parts):
            if part.isdigit():
                lists.setdefault(".".join(parts[:position]), set()).add(part)
    return max(map(len, lists.values()), default=0)


def check_shapes(folder: Path, classes: Mapping[str, tuple[str, ...]], tensors: dict, repair: str) -> None:
    """Each tensor has the shape the component's config implies (a model built on the meta device), for
    every weighted component `tensors` holds (the optional ones too: a second expert, an image encoder)."""
    check_layer_counts(folder, tensors, repair)
    for component, expected in expected_shapes(folder, classes, tuple(tensors)).items():
        for name, (_, shape, path) in tensors[component].items():
            if name in expected and list(expected[name]) != shape:
                raise VidgenError(
                    f"'{path}' holds {name} of shape {shape}, but {component}/config.json implies "
                    f"{list(expected[name])}: the weights do not belong to this config",
                    repair,
                )


def expected_shapes(
    folder: Path,
    classes: Mapping[str, tuple[str | None, ...]],
    components: tuple[str, ...] = REQUIRED_WEIGHTS,
) -> dict[str, dict[str, tuple[int, ...]]]:
    """The parameter shapes of each weighted component in `components`, from its config alone (no
    memory used)."""
    from accelerate import init_empty_weights

    shapes = {}
    with init_empty_weights():
        for component in components:
            model = _empty_model(folder, classes, component)
            shapes[component] = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    return shapes


def _empty_model(folder: Path, classes: Mapping[str, tuple[str | None, ...]], component: str) -> object:
    """The component built from its config (under `init_empty_weights`): transformers' encoders from
    their config class, diffusers' models from their config; a second expert is of the first's class."""
    import diffusers
    import transformers

    named = classes.get(component) or classes[component.removesuffix("_2")]
    name = next(cls for cls in named if cls is not None)
    if component in ("text_encoder", "image_encoder"):
        return getattr(transformers, name)(transformers.AutoConfig.from_pretrained(folder / component))
    cls = getattr(diffusers, name)
    return cls.from_config(cls.load_config(folder / component))


def check_model(folder: Path, repair: str, classes: Mapping[str, tuple[str, ...]]) -> None:
    """The whole check: configs, classes, tokenizer files, weights present and whole, shapes."""
    check_configs(folder, repair, classes)
    tensors = check_weights(folder, repair)
    check_shapes(folder, classes, tensors, repair)

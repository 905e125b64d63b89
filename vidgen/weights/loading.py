"""Loading the parts of a diffusers-format model folder, and moving stage models on and off the device.

Weights load only from safetensors: a pickled checkpoint can run code when it is read, and a model
folder is something a user downloads. Every model comes back in eval mode (a freshly built
transformers model has dropout on, which would make two runs of one seed differ).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from accelerate import cpu_offload
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import read_json
from vidgen.core.request import Runtime


def model_index(folder: Path) -> dict:
    """The folder's model_index.json: which class each component is."""
    path = folder / "model_index.json"
    if not path.is_file():
        raise VidgenError(
            f"{folder} is not a diffusers model folder (no model_index.json)",
            hint="pass the folder of a downloaded checkpoint, with model_index.json at its top",
        )
    return read_json(path)


def load_tokenizer(folder: Path) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer class model_index.json names (as diffusers loads it), from folder/tokenizer; any
    class transformers has, as long as it loads the folder's files."""
    from vidgen.weights.model_check import tokenizer_class

    _, name = model_index(folder).get("tokenizer", ("transformers", "AutoTokenizer"))
    cls = tokenizer_class(name)
    if cls is None:
        raise VidgenError(
            f"{folder}/model_index.json names tokenizer class {name!r}, which transformers does not have",
            "name a transformers tokenizer class, e.g. T5TokenizerFast",
        )
    try:
        return cls.from_pretrained(folder / "tokenizer")
    except Exception as error:  # whatever a tokenizer class raises on files it cannot read
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VidgenError(
            f"the tokenizer in '{folder / 'tokenizer'}' does not load as {name}: {reason}",
            "re-save the tokenizer with save_pretrained, or name the class that saved it in model_index.json",
        ) from None


# The text encoders the supported families ship: T5 v1.1 (CogVideoX) and UMT5 (Helios).
TEXT_ENCODERS = ("T5EncoderModel", "UMT5EncoderModel")


def load_text_encoder(folder: Path, dtype: torch.dtype) -> transformers.PreTrainedModel:
    """The text encoder model_index.json names, from folder/text_encoder, on the CPU, in eval mode."""
    _, name = model_index(folder).get("text_encoder", ("transformers", "T5EncoderModel"))
    if name not in TEXT_ENCODERS:
        raise VidgenError(
            f"{folder}/model_index.json names text encoder {name!r}, which vidgen does not run",
            hint=f"use a folder whose text encoder is one of {', '.join(TEXT_ENCODERS)}",
        )
    encoder = getattr(transformers, name).from_pretrained(
        folder / "text_encoder", dtype=dtype, use_safetensors=True
    )
    return encoder.eval()


def load_diffusers_model(cls: type, folder: Path, subfolder: str, dtype: torch.dtype) -> nn.Module:
    """A diffusers-style model (`from_pretrained(folder, subfolder=...)`) on the CPU, in eval mode."""
    model = cls.from_pretrained(folder, subfolder=subfolder, dtype=dtype, use_safetensors=True)
    return model.eval()


def load_scheduler(folder: Path, allowed: dict[str, type]):
    """A fresh scheduler of the class folder/scheduler/scheduler_config.json names, if it is allowed."""
    config = read_json(folder / "scheduler" / "scheduler_config.json")
    name = config.get("_class_name")
    if name not in allowed:
        raise VidgenError(
            f"{folder} uses scheduler {name!r}, which vidgen does not run for this model",
            hint=f"use one of {', '.join(sorted(allowed))} in scheduler/scheduler_config.json",
        )
    return allowed[name].from_pretrained(folder, subfolder="scheduler")


def place(module: nn.Module, runtime: Runtime) -> nn.Module:
    """Where a just-loaded model waits for its first stage, by offload mode.

    "none": on the device from the start. "model": on the CPU; `on_device` brings it for its stage.
    "group": a model with repeated blocks (transformer, text encoder) gets diffusers' group offload
    hooks, which bring one block at a time to the device and, on CUDA, copy the next block in on a
    second stream while the current one computes; a model without (the VAE) moves per stage as in
    "model". "sequential": accelerate hooks stream each layer's weights to the device as it runs, so
    the model itself stays on the CPU (its parameters show as "meta").
    """
    if runtime.offload == "none":
        return module.to(runtime.device)
    if runtime.offload == "sequential":
        return cpu_offload(module, execution_device=torch.device(runtime.device), offload_buffers=True)
    if runtime.offload == "group" and _block_owner(module) is not None:
        return _group_offload(module, torch.device(runtime.device))
    return module


def _block_owner(module: nn.Module) -> str | None:
    """The child holding the repeated blocks: "" for the model itself (a transformer's block list),
    "encoder" for a T5/UMT5 encoder (`encoder.block`); None for a model without repeated blocks."""
    if any(isinstance(child, nn.ModuleList) and len(child) > 1 for child in module.children()):
        return ""
    encoder = getattr(module, "encoder", None)
    if isinstance(getattr(encoder, "block", None), nn.ModuleList):
        return "encoder"
    return None


def _group_offload(module: nn.Module, device: torch.device) -> nn.Module:
    from diffusers.hooks import apply_group_offloading

    owner = _block_owner(module)
    stream = device.type == "cuda"  # prefetch the next block while this one computes
    apply_group_offloading(
        module,
        onload_device=device,
        offload_type="block_level",
        num_blocks_per_group=1,
        non_blocking=stream,
        use_stream=stream,
        # Pin each group's weights only while it is copied, so host RAM holds one copy of the model.
        low_cpu_mem_usage=True,
        block_modules=[owner] if owner else None,
    )
    module._vidgen_group_offload = True
    return module


def streams_itself(module: nn.Module, runtime: Runtime) -> bool:
    """Whether offload hooks move this module's weights, so a stage must not move it."""
    return runtime.offload == "sequential" or getattr(module, "_vidgen_group_offload", False)


@contextmanager
def on_device(module: nn.Module, runtime: Runtime, park: str | torch.device = "cpu") -> Iterator[nn.Module]:
    """Holds a stage's model on the device for the stage, then parks it off the device.

    Parking happens when `runtime.parks_models` (model offload), for every model but those whose
    offload hooks already keep the weights off the device ("sequential", "group"): the next stage gets
    the memory, and a later job brings the model back here. Without offload nothing moves: moving
    gigabytes between every stage and every job costs more than the stage itself on a card that
    holds them all. `park` is a parameter so that tests on a CPU-only
    machine can see the move ("meta").
    """
    if streams_itself(module, runtime):
        yield module
        return
    module.to(runtime.device)
    interrupted = False
    try:
        yield module
    except KeyboardInterrupt:
        # The process is about to exit: moving gigabytes of weights off the GPU first only delays it.
        interrupted = True
        raise
    finally:
        if runtime.parks_models and not interrupted:
            module.to(park)

"""What a model family gives vidgen: one row of `vidgen.families.registry`.

Layers below the families (weights, runtime levers, memory estimates) never ask which family they
serve: they take the row, or the ModelInfo its `read_info` returned, as a value.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request


@dataclass(frozen=True)
class Family:
    name: str  # as presets and ModelInfo name it
    title: str  # as messages name it
    # model_index.json `_class_name` prefixes of the pipelines this family runs ("CogVideoX").
    pipeline_prefixes: tuple[str, ...]
    # Component -> the classes vidgen runs for it (model_index.json and each component's config).
    classes: Mapping[str, tuple[str, ...]]
    # A model folder's configs -> what requests it can serve (no weights read).
    read_info: Callable[[Path], ModelInfo]
    # The family's option rules: (options, prompt, seed, preset, info, notes, reader) -> Request.
    build_request: Callable[..., Request]
    # The pipeline module (`load`, `generate`); imported when called, since it imports torch and diffusers.
    pipeline: Callable[[], ModuleType]
    # (folder, variant, seed) -> folder: writes a tiny random-weight model of `variant` in diffusers' format.
    build_tiny: Callable[[Path, str, int], Path]
    # The transformer class (its `lora_loader` names diffusers' mixin that reads its LoRAs).
    transformer: Callable[[], type]
    # Token counts one transformer call sees, for the context-parallel split; None: the plain count.
    token_counts: Callable[[Request, ModelInfo], set[int]] | None = None
    token_count_parts: str = ""  # what those counts are, for the message when they cannot split
    # `vidgen stream`'s pipeline module, for a family that generates chunk by chunk (None: no streaming),
    # and how many chunks a frame count takes.
    stream_pipeline: Callable[[], ModuleType] | None = None
    chunk_count: Callable[[int, ModelInfo], int] | None = None
    # Whether --strength applies to video-to-video (CogVideoX noises the input; Helios continues it).
    v2v_strength: bool = False
    # Components of `classes` that a folder may leave out (model_index.json names none, or null): Wan's
    # image encoder, which only the 2.1 image-to-video folders have.
    optional_components: tuple[str, ...] = ()
    # Whether the sampler is flow matching with a shift that `--flow-shift` sets (the scheduler
    # override "flow_shift").
    flow_shift: bool = False

    @property
    def streams(self) -> bool:
        return self.stream_pipeline is not None and self.chunk_count is not None

"""The one table of model families: every caller that needs a family's code asks here.

Adding a family is a folder beside this file (its model, pipeline, rules, info reader and tiny builder,
gathered in a `FAMILY` row), one line in FAMILIES, and its preset files.
"""

from pathlib import Path

from vidgen.core.errors import VidgenError, article
from vidgen.core.family import Family
from vidgen.core.model_info import ModelInfo, read_json
from vidgen.families.cogvideox import FAMILY as COGVIDEOX
from vidgen.families.helios import FAMILY as HELIOS
from vidgen.families.wan import FAMILY as WAN
from vidgen.weights import tiny
from vidgen.weights.sources import Families

FAMILIES: dict[str, Family] = {family.name: family for family in (COGVIDEOX, HELIOS, WAN)}


def family(name: str) -> Family:
    """The family called `name` (a preset's `family`, a ModelInfo's)."""
    if name not in FAMILIES:
        raise VidgenError(f"unknown model family '{name}'", f"vidgen runs {_names()}")
    return FAMILIES[name]


def detect(folder: Path) -> Family:
    """The family of a diffusers folder, from model_index.json's pipeline class."""
    index = read_json(folder / "model_index.json")
    pipeline = index.get("_class_name")
    if isinstance(pipeline, str):
        for candidate in FAMILIES.values():
            if pipeline.startswith(candidate.pipeline_prefixes):
                return candidate
    named = str(pipeline) if pipeline not in (None, "") else "unnamed"
    titles = " or ".join(candidate.title for candidate in FAMILIES.values())
    raise VidgenError(
        f"'{folder}' holds {article(named)} {named} pipeline, not {titles}",
        f"pass a {titles} folder, or a preset name (see `vidgen models`)",
    )


def read_info(folder: Path) -> ModelInfo:
    """What the folder's configs say about the requests it can serve, by its family's reader."""
    return detect(folder).read_info(folder)


def ensure_tiny(name: str, variant: str, cache_dir: Path | None = None, seed: int = 0) -> Path:
    """A tiny model of family `name`, built once into the cache (see `vidgen.weights.tiny`)."""
    return tiny.ensure_tiny(name, family(name).build_tiny, variant, cache_dir, seed)


def _names() -> str:
    return ", ".join(FAMILIES)


def _classes_for(folder: Path) -> dict[str, tuple[str, ...]]:
    """The classes the folder's family runs, per component the folder must have: an optional one
    (Wan's image encoder) only where model_index.json names it."""
    family = detect(folder)
    index = read_json(folder / "model_index.json")

    def has(component: str) -> bool:
        entry = index.get(component)
        return isinstance(entry, list) and len(entry) == 2 and entry[1] is not None

    return {
        component: classes
        for component, classes in family.classes.items()
        if component not in family.optional_components or has(component)
    }


# What the weights layer asks of the families, as one value it is handed.
WEIGHTS = Families(classes_for=_classes_for, build_tiny=ensure_tiny)

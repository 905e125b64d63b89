"""vidgen's own transformer implementations, state-dict compatible with diffusers' checkpoints."""

from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.helios.model import HeliosTransformer3DModel
from vidgen.families.wan.model import WanTransformer3DModel

__all__ = ["CogVideoXTransformer3DModel", "HeliosTransformer3DModel", "WanTransformer3DModel"]

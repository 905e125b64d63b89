"""vidgen's own transformer implementations, state-dict compatible with diffusers' checkpoints."""

from vidgen.models.cogvideox import CogVideoXTransformer3DModel
from vidgen.models.helios import HeliosTransformer3DModel

__all__ = ["CogVideoXTransformer3DModel", "HeliosTransformer3DModel"]

"""vidgen's own transformer implementations, state-dict compatible with diffusers' checkpoints.

This is the module a saved diffusers pipeline names for them (each class's `__module__`), so diffusers
loads them back from here: it finds a component's loading methods through this module's names, hence
ModelMixin below.
"""

from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 (see above)

from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.helios.model import HeliosTransformer3DModel
from vidgen.families.wan.model import WanTransformer3DModel

__all__ = ["CogVideoXTransformer3DModel", "HeliosTransformer3DModel", "WanTransformer3DModel"]

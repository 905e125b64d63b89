"""The runtime's speed levers applied to a loaded transformer: the one place every command shares.

`validate.runtime` checks the levers before anything loads; the pipelines' `load` calls
`apply_runtime` on their transformer once it is loaded and placed, so t2v, i2v, v2v, stream and batch
run it the same way.
"""

from torch import nn

from vidgen.request import Runtime
from vidgen.validate.runtime import ATTENTION_BACKENDS


def apply_runtime(transformer: nn.Module, runtime: Runtime) -> nn.Module:
    """Set `runtime`'s attention backend on `transformer` (any model with diffusers'
    `set_attention_backend`); returns it."""
    set_backend = getattr(transformer, "set_attention_backend", None)
    if set_backend is not None:
        set_backend(ATTENTION_BACKENDS[runtime.attention].diffusers)
    return transformer

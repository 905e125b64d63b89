"""The latent memory Helios conditions each chunk on: long, mid and short history, and the first frame.

diffusers' pipelines keep every latent frame ever generated (and every decoded frame) and slice the
last `sum(history_sizes)` each chunk. Only that tail is ever read, so `LatentHistory` keeps just the
tail: memory stays flat however long the video runs, and the model sees the same tensors.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class HistoryInputs:
    """What the transformer takes about the past for one chunk, named as its forward() names them."""

    latents_history_long: torch.Tensor  # [B, C, long, H, W]
    latents_history_mid: torch.Tensor  # [B, C, mid, H, W]
    latents_history_short: torch.Tensor  # [B, C, short (+1 first frame), H, W]
    indices_hidden_states: torch.Tensor  # [1, chunk] frame positions for rotary embeddings
    indices_latents_history_long: torch.Tensor  # [1, long]
    indices_latents_history_mid: torch.Tensor  # [1, mid]
    indices_latents_history_short: torch.Tensor  # [1, short (+1)]

    def as_kwargs(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Keyword arguments for the transformer, history latents cast to its dtype."""
        kwargs = dict(vars(self))
        for name in ("latents_history_long", "latents_history_mid", "latents_history_short"):
            kwargs[name] = kwargs[name].to(dtype)
        return kwargs


def window_sizes(history_sizes: tuple[int, ...], keep_first_frame: bool) -> list[int]:
    """[long, mid, short] latent frames, largest first as diffusers sorts them.

    Without the first frame the short history takes one more recent frame instead. diffusers 0.42.1
    crashes for `keep_first_frame=False` (it grows the short size after sizing the window); this is
    the evident intent: a window one frame longer.
    """
    sizes = sorted(history_sizes, reverse=True)
    if not keep_first_frame:
        sizes[-1] += 1
    return sizes


class LatentHistory:
    """The last `sum(sizes)` latent frames and the first-frame prefix; everything older is dropped."""

    def __init__(
        self,
        history_sizes: tuple[int, ...],
        chunk_frames: int,
        keep_first_frame: bool,
        seed: torch.Tensor,
        prefix: torch.Tensor | None = None,
    ) -> None:
        """`seed` [B, C, n, H, W]: latents that precede the video (I2V, V2V), n may be 0 (T2V).

        The window starts as zeros with `seed` at its end, as diffusers lays out its history.
        `prefix` [B, C, 1, H, W] is the first-frame anchor (the image or video's first frame).
        """
        self.sizes = window_sizes(history_sizes, keep_first_frame)
        self.keep_first_frame = keep_first_frame
        self.prefix = prefix
        length = sum(self.sizes)
        batch, channels, _, height, width = seed.shape
        zeros = torch.zeros(batch, channels, length, height, width, dtype=torch.float32, device=seed.device)
        self.window = torch.cat([zeros, seed.float()], dim=2)[:, :, -length:].clone()  # [B, C, length, H, W]
        self.indices = _frame_indices(self.sizes, chunk_frames, keep_first_frame)

    def inputs(self) -> HistoryInputs:
        """The history tensors and rotary positions for the next chunk."""
        long, mid, short = self.window.split(self.sizes, dim=2)
        if self.keep_first_frame:
            prefix = self.prefix if self.prefix is not None else torch.zeros_like(short[:, :, :1])
            short = torch.cat([prefix, short], dim=2)
        return HistoryInputs(long, mid, short, *self.indices)

    def append(self, latents: torch.Tensor) -> None:
        """Add a finished chunk's latents [B, C, F, H, W], dropping what falls out of the window."""
        length = self.window.shape[2]
        # cat() promotes to float32 as diffusers' cat onto its float32 history does.
        self.window = torch.cat([self.window, latents], dim=2)[:, :, -length:]


def _frame_indices(sizes: list[int], chunk_frames: int, keep_first_frame: bool) -> tuple[torch.Tensor, ...]:
    """(chunk, long, mid, short) frame positions, each [1, n].

    Positions run oldest to newest: [first frame,] long, mid, short, then the chunk being generated;
    with the first frame kept, it sits at position 0 but belongs to the short history.
    """
    lead = [1] if keep_first_frame else []
    parts = torch.arange(sum([*lead, *sizes, chunk_frames])).split([*lead, *sizes, chunk_frames])
    if keep_first_frame:
        first, long, mid, short, chunk = parts
        short = torch.cat([first, short])
    else:
        long, mid, short, chunk = parts
    return tuple(part.unsqueeze(0) for part in (chunk, long, mid, short))

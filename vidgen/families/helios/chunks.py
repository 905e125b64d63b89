"""How a Helios video divides into chunks, and its sampling settings: plain data and arithmetic, light
enough for option checks.

Both the chunk generator and the CLI's checks (which run before any model loads, without importing
diffusers) plan with these, so a note like "132 frames take 4 chunks" always matches what the generator
yields, and the torchrun check splits the same token counts the model will see.
"""

from dataclasses import dataclass

# Latent frames generated per chunk: the authors' value (33 video frames with the Wan VAE).
CHUNK_LATENT_FRAMES = 9


@dataclass(frozen=True)
class ChunkPlan:
    """How many chunks a request takes and how many frames each yields."""

    chunks: int
    window_frames: int  # video frames one chunk decodes to
    total_frames: int  # frames of the whole video

    def frames_in(self, chunk: int) -> int:
        """The last chunk yields fewer when the video is cut to 4k+1 frames, as diffusers does."""
        if chunk < self.chunks - 1:
            return self.window_frames
        return self.total_frames - (self.chunks - 1) * self.window_frames


def window_frames(temporal_compression: int, chunk_latent_frames: int = CHUNK_LATENT_FRAMES) -> int:
    """Video frames one chunk of latent frames decodes to (33 for 9 latents at 4x)."""
    return (chunk_latent_frames - 1) * temporal_compression + 1


def plan_chunks(
    frames: int,
    temporal_compression: int,
    chunk_latent_frames: int = CHUNK_LATENT_FRAMES,
    whole_chunks: bool = False,
) -> ChunkPlan:
    """Chunks for `frames` (rounded up to whole chunks), and the frames the video ends with: cut to
    4k+1 as diffusers does, or with `whole_chunks` every chunk's frames (what a stream ended early holds)."""
    window = window_frames(temporal_compression, chunk_latent_frames)
    chunks = max(1, -(-frames // window))
    total = chunks * window
    if not whole_chunks:
        total = (total - 1) // temporal_compression * temporal_compression + 1
    return ChunkPlan(chunks=chunks, window_frames=window, total_frames=total)


@dataclass(frozen=True)
class HeliosSettings:
    """Helios' sampling options beyond `Request`; defaults are diffusers' pipeline defaults."""

    history_sizes: tuple[int, int, int] = (16, 2, 1)  # long, mid, short latent frames
    chunk_latent_frames: int = CHUNK_LATENT_FRAMES  # latent frames generated per chunk (33 video frames)
    keep_first_frame: bool = True  # anchor every chunk's short history on the first latent frame
    skip_first_chunk: bool = False  # re-anchor on the second chunk's first frame (static starts)
    pyramid_steps: tuple[int, ...] = (10, 10, 10)  # steps per pyramid stage (Mid, Distilled)
    amplify_first_chunk: bool = False  # Distilled: twice the steps for the first chunk
    whole_chunks: bool = False  # end on a whole chunk instead of cutting the video to 4k+1 frames
    zero_init: bool = True  # CFG-Zero* (Mid): the first steps predict zero
    zero_steps: int = 1
    conditioning_noise: bool = True  # blur I2V/V2V latents with noise drawn from the ranges below
    image_noise_sigma: tuple[float, float] = (0.111, 0.135)
    video_noise_sigma: tuple[float, float] = (0.111, 0.135)

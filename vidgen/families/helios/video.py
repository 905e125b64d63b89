"""Helios as a whole-video pipeline, for `vidgen t2v/i2v/v2v` and `vidgen batch`: `load`, and a
`generate` that returns every chunk joined into one Result (the CogVideoX pipeline's shape).

`vidgen stream` uses `vidgen.families.helios.pipeline.generate_chunks` directly and writes each chunk
as it comes; here the frames are gathered because the whole-video writers take the video at once.
"""

import time

import numpy as np

from vidgen.core.progress import Progress, Silent
from vidgen.core.request import Request, Result, Runtime
from vidgen.families.helios import pipeline as helios
from vidgen.stages.text import TextCache

load = helios.load  # the other half of the pipeline interface: load(folder, runtime)


def generate(
    model: helios.Helios,
    request: Request,
    runtime: Runtime,
    progress: Progress = Silent(),
    text_cache: TextCache | None = None,
) -> Result:
    """Generate the whole video for a validated request; uint8 frames [F, H, W, 3] and timings."""
    settings = helios.settings_for(request)
    plan = helios.chunk_plan(model, request, settings)
    # Filled in place: concatenating the chunks at the end would hold the video twice.
    frames = np.empty((plan.total_frames, request.height, request.width, 3), np.uint8)
    start, done = time.perf_counter(), 0
    for chunk in helios.generate_chunks(model, request, settings, runtime, progress, text_cache):
        frames[done : done + len(chunk)] = chunk
        done += len(chunk)
    return Result(frames=frames, timings={"generate": time.perf_counter() - start})

"""The names each one-of-a-few option takes, one table each: the command line offers them (with no torch
loaded, so `--help` stays quick) and the option checks refuse anything else against the same table."""

MODES = {"t2v": "text-to-video", "i2v": "image-to-video", "v2v": "video-to-video"}
DTYPES = ("fp32", "fp16", "bf16")
# "auto" until vidgen.runtime.memory.auto settles it for the device and the model.
OFFLOADS = ("auto", "none", "model", "group", "sequential")
QUANTIZE_MODES = ("none", "fp8", "int8", "fp8-storage")
CACHE_MODES = ("none", "first-block", "mag", "taylorseer")  # --cache: diffusers' step caches
PARALLEL_MODES = ("auto", "ulysses", "ring", "cfg")
FORMATS = ("mp4", "gif", "png")
STREAM_FORMATS = ("mp4", "png")  # a GIF is written in one piece, so it cannot grow as a stream does

"""Do two checkouts of vidgen make the same frames? Runs each tiny preset through the CLI with both
(PNG frames, a fixed seed) and compares the PNG files byte for byte: the check a refactor owes.

    python bench/same_frames.py OLD_CHECKOUT NEW_CHECKOUT

Each checkout runs as `python -m vidgen` with PYTHONPATH set to it, in the current environment, with
its own tiny-model cache (the builds must match too). Prints one line per run and exits 1 on any
difference.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

RUNS = {
    "tiny-cogvideox t2v": ["t2v", "--model", "tiny-cogvideox"],
    "tiny-cogvideox v2v": ["v2v", "--model", "tiny-cogvideox", "--video", "{clip}"],
    "tiny-cogvideox-i2v i2v": ["i2v", "--model", "tiny-cogvideox-i2v", "--image", "{image}"],
    "tiny-cogvideox1.5 t2v": ["t2v", "--model", "tiny-cogvideox1.5"],
    "tiny-helios t2v": ["t2v", "--model", "tiny-helios", "--frames", "33"],
    "tiny-helios-mid t2v": ["t2v", "--model", "tiny-helios-mid", "--frames", "33"],
    "tiny-helios-distilled t2v": ["t2v", "--model", "tiny-helios-distilled", "--frames", "33"],
    "tiny-helios-distilled stream": ["stream", "--model", "tiny-helios-distilled", "--frames", "66"],
}


def inputs(folder: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    image = folder / "image.png"
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(image)
    clip = folder / "clip.gif"
    frames = [Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)) for _ in range(9)]
    frames[0].save(clip, save_all=True, append_images=frames[1:], duration=125)
    return {"image": str(image), "clip": str(clip)}


def run(checkout: Path, words: list[str], out: Path, cache: Path) -> list[bytes]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "VIDGEN_CACHE": str(cache)}
    command = [sys.executable, "-m", "vidgen", *words, "--prompt", "a red fox", "--seed", "7"]
    command += ["--format", "png", "-o", str(out), "-q"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out.parent)
    if done.returncode:
        raise SystemExit(f"{checkout}: {' '.join(words)} failed: {done.stderr.strip()}")
    return [path.read_bytes() for path in sorted(out.glob("*.png"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    differ = 0
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        given = inputs(work)
        for name, template in RUNS.items():
            words = [word.format(**given) for word in template]
            frames = []
            for side, checkout in (("old", args.old), ("new", args.new)):
                out = work / f"{name.replace(' ', '-')}-{side}"
                frames.append(run(checkout.resolve(), words, out, work / f"cache-{side}"))
            same = frames[0] == frames[1] and frames[0]
            differ += not same
            print(f"{name}: {len(frames[0])} frames, {'byte-identical' if same else 'DIFFERENT'}")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()

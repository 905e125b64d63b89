"""Which Wan preset fits which card, by vidgen's memory planner: `python bench/wan_memory.py`.

For each released Wan preset at its default size, the planner reads a folder of the released configs with
header-only weights (bench/released_wan.py, so nothing is downloaded and no GPU is needed) as it reads a
downloaded one before `--offload auto`, and this prints a Markdown table of what it estimates:

- download: what `vidgen download` fetches (the preset's `download_bytes`).
- none / model / group / sequential: the estimated device peak of `--offload X` (weights on the device
  plus the largest stage's working memory), in GB of 10^9 bytes as nvidia-smi shows them; `*` where it
  needs the VAE tiled, which the planner turns on when an untiled decode does not fit.
- host RAM: what every offload plan keeps in RAM (all the weights, once).
- 12 GB ... 80 GB: the plan `--offload auto` picks with that much free device memory and enough RAM.

These are estimates (vidgen/runtime/memory), not measurements; bench/gpu_suite.py measures peaks on a GPU.

    python bench/wan_memory.py
    python bench/wan_memory.py --presets wan2.1-t2v-1.3b wan2.2-ti2v-5b
"""

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.request import DTYPES, Request, Runtime
from vidgen.families import registry
from vidgen.runtime.memory.auto import plan_for, plan_inputs
from vidgen.runtime.memory.plan import GB, MemoryPlan, device_peak, host_need
from vidgen.weights.presets import PRESET_DIR, Preset, load_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from released_wan import RELEASED_FOLDERS, write_released  # noqa: E402

CARDS = (12, 16, 24, 48, 80)  # GB free on the device
OFFLOADS = ("none", "model", "group", "sequential")
# The cards' columns assume the RAM that offloading needs is there: the host RAM column says how much.
ROOMY_HOST = 10**15


@dataclass(frozen=True)
class Estimate:
    """One preset's row: the planner's numbers at the preset's default size."""

    preset: Preset
    peaks: dict[str, tuple[int, bool]]  # offload -> (device bytes, whether the VAE is tiled)
    host: int  # bytes every offload plan keeps in RAM
    plans: dict[int, MemoryPlan | None]  # card GB -> the auto plan; None: nothing fits


def estimate(name: str, root: Path) -> Estimate:
    """Build the released `name`'s header-only folder under `root` and plan its default size."""
    preset = load_preset(PRESET_DIR / f"{name}.toml")
    folder = write_released(root / name, name)
    info = registry.read_info(folder)
    runtime = Runtime(device="cuda", dtype=DTYPES[preset.dtype], offload="auto", vae_tiling=None)
    request = Request(
        mode=preset.modes[0],
        prompt="a cat",
        guidance=preset.guidance,
        guidance_2=preset.guidance_2,
        height=preset.height,
        width=preset.width,
        frames=preset.frames,
    )
    parts, work = plan_inputs(runtime, folder, request, info)
    peaks = {}
    for offload in OFFLOADS:
        # The planner tries the decode untiled, then tiled: this plan's least card is the tiled peak.
        untiled = device_peak(offload, "none", parts, work, False)
        tiled = device_peak(offload, "none", parts, work, True)
        peaks[offload] = (tiled, tiled < untiled)
    plans: dict[int, MemoryPlan | None] = {}
    for card in CARDS:
        try:
            plans[card] = plan_for(runtime, folder, request, info, int(card * GB), host=ROOMY_HOST)
        except VidgenError:
            plans[card] = None
    return Estimate(preset, peaks, host_need("model", "none", parts), plans)


def plan_cell(plan: MemoryPlan | None) -> str:
    if plan is None:
        return "does not fit"
    cell = plan.offload + (" + fp8-storage" if plan.quantize == "fp8-storage" else "")
    return cell + (", tiled VAE" if plan.vae_tiling else "")


def row(item: Estimate) -> str:
    preset = item.preset
    cells = [
        f"`{preset.name}`",
        f"{preset.width}x{preset.height}, {preset.frames}",
        f"{preset.download_bytes / GB:.1f}",
        *(f"{peak / GB:.1f}{'*' if tiled else ''}" for peak, tiled in item.peaks.values()),
        f"{item.host / GB:.1f}",
        *(plan_cell(item.plans[card]) for card in CARDS),
    ]
    return "| " + " | ".join(cells) + " |"


def table(items: list[Estimate]) -> list[str]:
    head = ["preset", "size, frames", "download", *OFFLOADS, "host RAM", *(f"{card} GB" for card in CARDS)]
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *(row(item) for item in items),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", choices=list(RELEASED_FOLDERS), default=list(RELEASED_FOLDERS), metavar="NAME"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wan-memory-") as root:
        items = [estimate(name, Path(root)) for name in args.presets]
    print("\n".join(table(items)))
    print(
        "\nGB: 10^9 bytes. Estimates of vidgen's memory planner at each preset's default size, bf16, guided;"
        " `*`: with the VAE tiled."
    )


if __name__ == "__main__":
    main()

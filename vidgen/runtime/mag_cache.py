"""`--cache mag`: diffusers' MagCache, with magnitude ratios measured on the user's own model.

MagCache skips a step when the change it predicts for the blocks' residual, from the step-to-step
ratios of its magnitude, stays under a threshold. Those ratios depend on the checkpoint and on the
schedule, and vidgen has no released weights to measure them on, so it ships none. A denoising loop
whose schedule has no stored ratios runs in diffusers' calibration mode (nothing is skipped: the frames
equal uncached ones) and its measured ratios are stored in vidgen's cache folder, in one file per
transformer (keyed by a fingerprint of its weights), one entry per schedule (keyed by its timesteps).
Every later loop with that model and schedule reads them and skips: the next run, the next job of a
batch, the next chunk of a Helios stream. A preset's `mag_ratios` are used for every schedule instead
(diffusers stretches them to the step count).

So that a sidecar's command replays its frames, a run records which stored ratios it read: none (its
command says `--mag-ratios measure`: the replay measures afresh, as the run did), or some (they are
written beside the output as OUTPUT.mag-ratios.json, which the command names). Either way the replay
neither reads nor writes the shared store: it skips exactly where the run did.
"""

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidgen.core.errors import article
from vidgen.core.paths import default_cache_dir
from vidgen.core.ratios import valid_ratios

if TYPE_CHECKING:  # torch loads with the models, not with the presets that check `mag_ratios`
    import torch
    from torch import nn

STORE_FOLDER = "mag-ratios"  # under $VIDGEN_CACHE (see vidgen.core.paths)
STORE_FORMAT = "vidgen-mag-ratios/1"
# diffusers resets a calibrating cache (printing its ratios to stdout, which may be the video stream)
# once `num_inference_steps` steps are done. vidgen ends every loop itself (`MagSession.begin`), so while
# it calibrates that count is one no loop reaches.
NEVER_ENDS = 2**62
SAMPLES_PER_TENSOR = 256  # weight values read per tensor for the fingerprint
MEASURE = "measure"  # --mag-ratios measure: start with no stored ratios


def weights_fingerprint(transformer: "nn.Module") -> str:
    """A hex digest that tells checkpoints apart: each tensor's name, shape and a strided sample of its
    values, rounded to bf16 so the same weights loaded in fp32, fp16 or bf16 agree. Read before
    offloading (sequential offload leaves no values on the module); fused LoRAs change it."""
    import torch

    digest = hashlib.sha256(type(transformer).__name__.encode())
    with torch.no_grad():
        for name, tensor in transformer.named_parameters():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // SAMPLES_PER_TENSOR)][:SAMPLES_PER_TENSOR]
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(sample.to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def schedule_key(timesteps: Sequence[float]) -> str:
    """The key of a denoising loop's ratios: its timesteps (they carry the scheduler, the step count,
    v2v's strength, the pyramid stage and Helios' resolution shift), rounded past float noise."""
    return ",".join(f"{float(t):.3f}" for t in timesteps)


def store_path(fingerprint: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / STORE_FOLDER / f"{fingerprint[:32]}.json"


@dataclass
class RatioStore:
    """One transformer's measured ratios, by schedule key, and the file they live in: the shared store,
    or with --mag-ratios a file of its own (or none) whose ratios are kept for the run, never saved."""

    path: Path | None
    ratios: dict[str, list[float]] = field(default_factory=dict)
    shared: bool = True  # the shared store: measured ratios are saved into it

    def save(self) -> None:
        """Write atomically, merged with what another process stored meanwhile; ours win. The merged
        file is written; this run keeps using only what it read at load and what it measured."""
        if self.path is None:
            return
        stored, _ = read_ratios(self.path)
        write_ratios(self.path, {**stored, **self.ratios})


def write_ratios(path: Path, schedules: dict[str, list[float]]) -> None:
    """Write a ratios file atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"format": STORE_FORMAT, "schedules": schedules}, file, indent=1)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def replay_path(output: Path) -> Path:
    """`cat.mp4` -> `cat.mp4.mag-ratios.json`: the stored ratios a run read, for its replay."""
    return output.with_name(output.name + ".mag-ratios.json")


def replay_option(read: dict[str, list[float]], output: Path | None) -> str | None:
    """`--mag-ratios` for a replay of a run that read the stored ratios `read`: "measure" when it read
    none, else the file beside `output` it writes them into (None for an output with no file, -o -)."""
    if not read:
        return MEASURE
    if output is None:
        return None
    path = replay_path(output)
    try:
        write_ratios(path, read)
    except OSError:  # the video is kept; its command then replays with the shared store
        return None
    return str(path)


def read_ratios(path: Path) -> tuple[dict[str, list[float]], str | None]:
    """The ratios stored in `path` ({} when there is no file) and, for a file that cannot be used,
    why not (its ratios are then measured again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, f"unreadable ({type(error).__name__})"
    except ValueError:  # an integer of more than 4,300 digits
        return {}, "unreadable (a number too long to read)"
    except RecursionError:  # thousands of nested brackets
        return {}, "unreadable (nested too deeply)"
    schedules = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or not isinstance(schedules, dict):
        return {}, f"not a {STORE_FORMAT} file"
    for key, ratios in schedules.items():
        if not valid_ratios(ratios) or len(ratios) != len(key.split(",")):
            return {}, f"its ratios for one schedule are not {len(key.split(','))} positive numbers"
    return schedules, None


class MagSession:
    """The mag cache of one transformer: sets diffusers' config for each denoising loop (ratios to skip
    with, or calibration), and stores the ratios a calibrating loop measures as soon as it ends.

    `config` is the MagCacheConfig diffusers' hooks hold; it is changed in place per loop. `states`
    returns the hooks' per-context states (their `calibration_ratios`).
    """

    def __init__(
        self,
        config: Any,
        states: Callable[[], dict[str, Any]],
        store: RatioStore,
        given: tuple[float, ...] = (),
        problem: str | None = None,
    ) -> None:
        self.config, self.states, self.store, self.given = config, states, store, given
        self.tell: Callable[[str], None] | None = None  # the progress' note, once a run attaches it
        self.notes: list[str] = []  # every note made, `said` of them told
        self.said = 0
        self.loop: list[float] | None = None  # the timesteps of the loop being calibrated, until stored
        self.measured = False  # since `take`: a loop ran calibrating
        # Since `take`: the schedules measured, and the stored ratios a loop skipped with (those read at
        # load or measured by an earlier run on this model): what a replay needs.
        self.measured_keys: set[str] = set()
        self.read: dict[str, list[float]] = {}
        self.told = False  # the note that ratios are being measured, said once
        if problem:
            self.note(f"--cache mag: the stored ratios in {store.path} are {problem}; measuring them again")
        if store.path is not None:
            self.where = (
                f" into {store.path.parent}" if store.shared else f" (for this run; {store.path} has none)"
            )
        else:
            self.where = " (--mag-ratios measure: for this run)"

    def attach(self, tell: Callable[[str], None]) -> None:
        """Say notes with `tell` from now on, starting with those not yet said (made at load)."""
        self.tell = tell
        for line in self.notes[self.said :]:
            tell(line)
        self.said = len(self.notes)

    def note(self, line: str) -> None:
        self.notes.append(line)
        if self.tell is not None:
            self.tell(line)
            self.said = len(self.notes)

    def begin(self, timesteps: "Sequence[float] | torch.Tensor") -> None:
        """Set up the cache for a denoising loop over `timesteps`, its state already reset."""
        import torch
        from diffusers.hooks.mag_cache import nearest_interp

        steps = timesteps.tolist() if isinstance(timesteps, torch.Tensor) else [float(t) for t in timesteps]
        key = schedule_key(steps)
        ratios = list(self.given) or self.store.ratios.get(key)
        self.loop = None if ratios else steps
        if ratios and not self.given and key not in self.measured_keys:
            self.read[key] = list(ratios)
        if ratios:
            self.config.calibrate = False
            self.config.num_inference_steps = len(steps)
            self.config.mag_ratios = nearest_interp(torch.tensor(ratios), len(steps))
            return
        self.config.calibrate = True
        self.config.num_inference_steps = NEVER_ENDS
        self.measured = True
        if not self.told:
            self.told = True
            self.note(
                f"--cache mag: no magnitude ratios stored for this model and {article(str(len(steps)))} "
                f"{len(steps)}-step schedule: "
                f"measuring them (nothing is skipped until they are measured){self.where}"
            )

    def after_call(self) -> None:
        """After each transformer call: once a calibrating loop's first guidance branch has measured
        every step, store its ratios (so an interrupted run keeps what it measured)."""
        if self.loop is None:
            return
        for state in self.states().values():
            measured = state.calibration_ratios
            if len(measured) >= len(self.loop):
                key = schedule_key(self.loop)
                self.store.ratios[key] = [float(r) for r in measured[: len(self.loop)]]
                self.measured_keys.add(key)
                self.loop = None
                self._save()
                return

    def take(self) -> dict[str, Any]:
        """What the sidecar says about the ratios since the last call: where they came from; and for
        the replay (not for the sidecar), "replay_read" and "replay_measured" (see `self.read`)."""
        source = "measured" if self.measured else "preset" if self.given else "stored"
        read, measured = self.read, self.measured_keys
        self.measured, self.read, self.measured_keys = False, {}, set()
        where = None if self.given or self.store.path is None else str(self.store.path)
        return {"ratios": source, "ratios_file": where, "replay_read": read, "replay_measured": measured}

    def _save(self) -> None:
        if not self.store.shared:
            return
        try:
            self.store.save()
        except OSError as error:  # the video still finishes; the next run measures again
            self.note(f"--cache mag: could not store the ratios it measured in {self.store.path}: {error}")

"""A folder takes a released preset's settings only when its transformer config is that preset's released
one. Anything else (a copied tiny model, a fine-tune of another shape) runs on its own scheduler and
sample size with a few steps, and a note says so: a copied tiny model must not run for minutes at 720x480."""

import inspect
import json
import shutil

import diffusers
import pytest

from vidgen.app.prepare import prepare
from vidgen.validate.common import Options


def plan_for(folder, mode="t2v", preset=None):
    return prepare(Options(mode=mode, model=str(folder), prompt="a cat", seed=1, preset=preset))


@pytest.fixture
def copied(tiny_folder, tmp_path, monkeypatch):
    """`copied(family, variant)`: `cp -r` of a tiny model's folder, in the current folder."""
    monkeypatch.chdir(tmp_path)

    def copy(family, variant):
        return shutil.copytree(tiny_folder(family, variant), tmp_path / f"copy-{family}-{variant}")

    return copy


@pytest.mark.parametrize("preset", [None, "none"])
def test_a_copied_tiny_cogvideox_runs_at_its_own_sample_size_and_few_steps(copied, preset):
    plan = plan_for(copied("cogvideox", "t2v"), preset=preset)
    request = plan.request
    assert (request.height, request.width, request.frames) == (64, 96, 9)  # 8x12 latents x 8, 9 frames
    assert request.steps <= 20  # seconds for a tiny model, not the released 50
    assert plan.preset.name == "none" and dict(request.scheduler) == {}  # the folder's own scheduler
    note = next(note for note in plan.notes if "own defaults" in note)
    assert "64x96, 9 frames" in note and f"{request.steps} steps" in note
    assert not any("shaped like" in note for note in plan.notes)


def test_a_copied_tiny_i2v_folder_is_not_taken_for_the_released_i2v(copied, tmp_path):
    from PIL import Image

    Image.new("RGB", (96, 64)).save(tmp_path / "in.png")
    folder = copied("cogvideox", "i2v")
    plan = prepare(Options(mode="i2v", model=str(folder), prompt="a cat", seed=1, image="in.png"))
    assert plan.preset.name == "none" and plan.request.steps <= 20
    assert (plan.request.height, plan.request.width) == (64, 96)


def test_a_copied_tiny_helios_is_not_taken_for_helios_base(copied):
    plan = plan_for(copied("helios", "base"))
    assert plan.preset.name == "none" and plan.request.steps <= 20
    assert any("own defaults" in note for note in plan.notes)


def test_a_folder_with_the_released_2b_config_as_diffusers_writes_it_today_takes_the_2b_preset(copied):
    folder = copied("cogvideox", "t2v")
    parameters = inspect.signature(diffusers.CogVideoXTransformer3DModel.__init__).parameters.values()
    config = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    config.update(_class_name="CogVideoXTransformer3DModel", _diffusers_version=diffusers.__version__)
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    request = plan_for(folder).request
    assert (request.height, request.width, request.frames, request.steps) == (480, 720, 49, 50)
    assert plan_for(folder).preset.name == "cogvideox-2b"
    # One released number changed (a fine-tune with more layers) is no longer the released model.
    config["num_layers"] = 31
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    plan = plan_for(folder)
    assert plan.preset.name == "none" and (plan.request.height, plan.request.width) == (480, 720)
    assert plan.request.steps <= 20

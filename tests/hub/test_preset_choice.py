"""A folder or repo without a preset name takes the settings of the released preset whose transformer
config it has, and says so; --preset NAME|none chooses explicitly."""

import inspect
import json

import diffusers
import pytest
import tiny_hub
from model_infos import RELEASED

from vidgen.app.prepare import prepare
from vidgen.validate.common import Options


@pytest.fixture
def folder_5b(tmp_path):
    return tiny_hub.write_published(tmp_path / "my-5b", "cogvideox-5b")


@pytest.fixture
def released_5b(folder_5b):
    """The 5b layout with the released transformer config, as diffusers 0.30 wrote it: without the
    switches added since (1.5's), whose defaults then apply. Only its configs are read."""
    parameters = inspect.signature(diffusers.CogVideoXTransformer3DModel.__init__).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    config = {"_class_name": "CogVideoXTransformer3DModel", "_diffusers_version": "0.30.0"}
    config.update(defaults, **RELEASED["5b"])
    for added_later in ("patch_size_t", "ofs_embed_dim", "patch_bias"):
        del config[added_later]
    (folder_5b / "transformer" / "config.json").write_text(json.dumps(config))
    return folder_5b


def plan_for(folder, preset=None):
    return prepare(Options(mode="t2v", model=str(folder), prompt="a cat", seed=1, preset=preset))


def test_a_folder_shaped_like_a_preset_says_which_settings_it_took(released_5b, hub_env):
    plan = plan_for(released_5b)
    assert plan.preset.name == "cogvideox-5b"
    assert dict(plan.request.scheduler)["_class_name"] == "CogVideoXDPMScheduler"
    note = next(note for note in plan.notes if "shaped like" in note)
    assert "cogvideox-5b" in note and "CogVideoXDPMScheduler" in note and "trailing" in note
    assert "--preset" in note


def test_preset_none_keeps_the_folders_own_scheduler(released_5b, hub_env):
    plan = plan_for(released_5b, "none")
    assert plan.preset.name == "none"
    assert "_class_name" not in dict(plan.request.scheduler)
    assert not plan.request.dynamic_cfg
    assert not any("shaped like" in note for note in plan.notes)


def test_preset_name_chooses_another_presets_settings(folder_5b, hub_env):
    plan = plan_for(folder_5b, "CogVideoX-2b")
    assert plan.preset.name == "cogvideox-2b" and plan.request.steps == 50
    assert dict(plan.request.scheduler) == {}


def test_the_sidecar_command_repeats_the_preset_a_folder_took(folder_5b, hub_env, invoke_cli, tmp_path):
    run = invoke_cli(
        "t2v", "--model", str(folder_5b), "a cat", "--preset", "none", "--height", "64", "--width", "96",
        "--frames", "9", "--steps", "1", "--dtype", "fp32", "--seed", "1", "-o", "out.mp4",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    sidecar = json.loads((tmp_path / "out.mp4.json").read_text())
    assert sidecar["model"]["preset"] == "none" and "--preset=none" in sidecar["command"]


@pytest.mark.parametrize(
    "preset, texts",
    [("helios-base", ["helios preset", "the model is cogvideox"]), ("cogvideox-3b", ["unknown --preset"])],
)
def test_a_wrong_preset_is_a_one_line_error(folder_5b, hub_env, invoke_cli, preset, texts):
    run = invoke_cli("t2v", "--model", str(folder_5b), "a cat", "--preset", preset, "--seed", "1")
    assert run.exit_code == 2, run.stderr
    assert len(run.stderr_lines) == 1
    assert all(text in run.stderr for text in texts)


def test_batch_and_stream_take_preset_too(folder_5b, hub_env, invoke_cli, tmp_path):
    (tmp_path / "jobs.jsonl").write_text('{"prompt": "a cat", "seed": 1}\n')
    batch = invoke_cli("batch", "jobs.jsonl", "-o", "out", "--model", str(folder_5b), "--preset", "nope")
    assert batch.exit_code == 2 and "unknown --preset 'nope'" in batch.stderr
    checked = invoke_cli("batch", "jobs.jsonl", "-o", "out", "--model", str(folder_5b), "--preset", "none",
                         "--dry-run", "--height", "64", "--width", "96", "--frames", "9")  # fmt: skip
    assert checked.exit_code == 0, checked.stderr
    stream = invoke_cli(
        "stream", "a cat", "--model", str(folder_5b), "--preset", "helios-base", "--seed", "1"
    )
    assert stream.exit_code == 2 and "--preset helios-base is a helios preset" in stream.stderr

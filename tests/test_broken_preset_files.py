"""A broken preset file (bad TOML, an unknown key, a taken name, a mistyped value) is reported once, as
one warning line naming the file, and skipped: every command still runs with the other presets."""

import shutil

import pytest

from vidgen.weights import presets
from vidgen.weights.presets import PRESET_DIR, load_presets

GOOD = (PRESET_DIR / "tiny-cogvideox.toml").read_text()


def renamed(name: str, old: str, new: str) -> str:
    """The good file under another preset name, with `old` replaced by `new`."""
    return GOOD.replace('name = "tiny-cogvideox"', f'name = "{name}"').replace(old, new)


BROKEN = {
    "syntax.toml": "name = \n",
    "unknown-key.toml": renamed("other", "fps = 8", "fps = 8\ncolour = 1"),
    "zz-duplicate.toml": GOOD,  # after tiny-cogvideox.toml in file-name order: the first one stays
    "modes.toml": renamed("m", 'modes = ["t2v", "v2v"]', "modes = 5"),
    "steps.toml": renamed("s", "steps = 4", 'steps = "four"'),
    "bytes.toml": b"name = \xff\n",
}


def write_broken(folder, name):
    content = BROKEN[name]
    (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_file_is_one_warning_naming_it_and_the_others_load(tmp_path, name):
    (tmp_path / "tiny-cogvideox.toml").write_text(GOOD)
    write_broken(tmp_path, name)
    warnings = []
    loaded = load_presets(tmp_path, warn=warnings.append)
    assert list(loaded) == ["tiny-cogvideox"] and loaded["tiny-cogvideox"].steps == 4
    assert len(warnings) == 1 and str(tmp_path / name) in warnings[0], warnings
    assert "\n" not in warnings[0]


@pytest.fixture
def preset_dir_with_a_broken_file(tmp_path, monkeypatch):
    """The shipped presets plus one broken file, as the folder every command reads."""
    folder = tmp_path / "presets"
    shutil.copytree(PRESET_DIR, folder)
    write_broken(folder, "modes.toml")
    monkeypatch.setattr(presets, "PRESET_DIR", folder)
    monkeypatch.chdir(tmp_path)
    return folder


def one_warning(run, folder):
    warnings = [line for line in run.stderr_lines if line.startswith("warning: ")]
    assert len(warnings) == 1 and str(folder / "modes.toml") in warnings[0], run.stderr


def test_models_lists_the_others_and_warns_once(preset_dir_with_a_broken_file, invoke_cli):
    run = invoke_cli("models")
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert "tiny-cogvideox" in run.stdout and "helios-distilled" in run.stdout
    one_warning(run, preset_dir_with_a_broken_file)


def test_t2v_runs_with_a_broken_preset_file_beside_it(preset_dir_with_a_broken_file, invoke_cli):
    run = invoke_cli(
        "t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "--frames", "1", "--seed", "1",
        "-o", "out.mp4",
    )  # fmt: skip
    assert run.exit_code == 0, (run.stderr, run.exception)
    one_warning(run, preset_dir_with_a_broken_file)

"""`vidgen models` lists every preset; `vidgen models show NAME` prints one preset's settings."""

from vidgen.weights.presets import load_presets


def test_models_lists_every_preset_with_its_source(vidgen):
    run = vidgen("models")
    assert run.exit_code == 0, run.stderr
    for preset in load_presets().values():
        assert preset.name in run.stdout
    assert "THUDM/CogVideoX" in run.stdout and "1360x768, 81" in run.stdout


def test_models_show_prints_the_settings(vidgen):
    run = vidgen("models", "show", "CogVideoX-5b")
    assert run.exit_code == 0, run.stderr
    for text in ("THUDM/CogVideoX-5b", "bf16", "CogVideoXDPMScheduler", "trailing", "t2v v2v"):
        assert text in run.stdout


def test_models_show_an_unknown_name_suggests_close_ones(vidgen):
    run = vidgen("models", "show", "cogvideox-3b")
    assert run.exit_code == 2
    assert len(run.stderr_lines) == 1
    assert "did you mean" in run.stderr and "cogvideox-5b" in run.stderr

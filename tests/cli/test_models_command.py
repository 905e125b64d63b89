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


def test_models_says_how_much_a_model_not_cached_would_download(vidgen, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("COLUMNS", "80")
    run = vidgen("models")
    assert run.exit_code == 0, run.stderr
    assert all(len(line) <= 80 for line in run.stdout.splitlines()), run.stdout
    lines = run.stdout.splitlines()

    def cells(name, column, count):
        first = next(number for number, line in enumerate(lines) if f"│ {name} " in line)
        return [line.split("│")[column].strip() for line in lines[first : first + count]]

    assert cells("wan2.1-t2v-1.3b", 5, 3) == ["no", "28.9 GB", "to fetch"]
    assert cells("wan2.2-ti2v-5b", 3, 2) == ["1280x704,", "121"]  # wraps, not cut

"""What `--help` and the messages say: install hints that survive Rich markup, every job key listed,
usage lines as command lines write them, flags shown as flags, sizes as WIDTHxHEIGHT everywhere,
and "an" before a word read with a vowel."""

import re

import pytest
from PIL import Image

from vidgen.app.batch.keys import KEYS, LORA_KEY
from vidgen.weights.presets import load_presets

COMMANDS = [
    (),
    ("t2v",),
    ("i2v",),
    ("v2v",),
    ("stream",),
    ("batch",),
    ("download",),
    ("models",),
    ("models", "show"),
]


@pytest.fixture
def help_of(vidgen, monkeypatch):
    """`help_of(*command)` -> its --help with the panels' borders gone and the words on one line."""
    monkeypatch.setenv("COLUMNS", "300")  # Rich wraps at the terminal's width; no option row wraps here

    def text(*command: str) -> str:
        run = vidgen(*command, "--help")
        assert run.exit_code == 0, (run.stderr, run.exception)
        return " ".join(re.sub("[│╭╮╰╯─]", " ", run.stdout).split())

    return text


def test_the_quantize_help_keeps_the_extra_in_brackets(help_of):
    assert 'need torchao (pip install "vidgen[fast]");' in help_of("t2v")


def test_batch_help_lists_every_job_key(help_of):
    listed = re.search(r"Its keys are the long option names \(([^)]*)\) and name", help_of("batch"))
    assert listed, "the key list is missing"
    assert set(listed[1].split(", ")) == (set(KEYS) - {"name"}) | {LORA_KEY}


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (("batch",), "Usage: vidgen batch [OPTIONS] JOBS "),
        (("download",), "Usage: vidgen download [OPTIONS] MODEL "),
        (("models", "show"), "Usage: vidgen models show [OPTIONS] NAME "),
        (("t2v",), "Usage: vidgen t2v [OPTIONS] [PROMPT] "),
    ],
)
def test_usage_lines_name_arguments_plainly(help_of, command, usage):
    assert help_of(*command).startswith(usage)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda words: " ".join(words) or "vidgen")
def test_flags_show_no_type_and_usage_no_braces(help_of, command):
    text = help_of(*command)
    assert "<bool>" not in text
    usage_and_summary = text.split(" Arguments ")[0].split(" Options ")[0]
    assert "{" not in usage_and_summary


def test_version_is_a_flag_in_the_top_help(help_of):
    assert "--version Print the version and exit." in help_of()


def test_models_lists_sizes_as_width_x_height(vidgen, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    run = vidgen("models")
    assert run.exit_code == 0, run.stderr
    for preset in load_presets().values():
        assert f"{preset.width}x{preset.height}, {preset.frames}" in run.stdout, preset.name


def test_preset_descriptions_give_sizes_as_width_x_height():
    for preset in load_presets().values():
        for size in re.findall(r"\d+x\d+", preset.description):
            assert size == f"{preset.width}x{preset.height}", (preset.name, preset.description)


def test_a_too_large_size_is_said_as_width_x_height(vidgen, offline_workdir):
    run = vidgen("t2v", "--model", "tiny-cogvideox1.5", "a cat", "--width", "128")
    assert run.exit_code == 2, run.stderr
    assert "at most 96x64 (width x height); 128x64 is larger" in run.stderr


def test_the_mode_hint_says_an_i2v_model(vidgen, offline_workdir):
    Image.new("RGB", (96, 64)).save(offline_workdir / "photo.png")
    run = vidgen("i2v", "--model", "tiny-cogvideox", "--image", "photo.png", "a cat")
    assert run.exit_code == 2, run.stderr
    assert "or an i2v model such as" in run.stderr and "a i2v" not in run.stderr


def test_a_folder_given_as_image_says_an_image_file(vidgen, offline_workdir):
    (offline_workdir / "photos").mkdir()
    run = vidgen("i2v", "--model", "tiny-cogvideox-i2v", "--image", "photos", "a cat")
    assert run.exit_code == 2, run.stderr
    assert "pass the path to an image file" in run.stderr


@pytest.mark.parametrize("command", ["t2v", "i2v", "v2v", "stream", "batch"])
def test_the_size_help_gives_the_multiple_of_every_family(help_of, command):
    text = help_of(command)
    for option in ("Height", "Width"):
        assert (
            f"{option} in pixels, a multiple of the model's VAE scale times its patch size: 16 for most "
            "models, 32 for Wan 2.2 TI2V."
        ) in text
    assert "a multiple of 16." not in text


def test_the_sizes_the_help_names_are_the_models_own(tiny_folder):
    from vidgen.families import registry

    assert registry.read_info(tiny_folder("wan", "ti2v")).size_multiple == 32
    for family, variant in (("wan", "t2v"), ("cogvideox", "t2v"), ("helios", "base")):
        assert registry.read_info(tiny_folder(family, variant)).size_multiple == 16

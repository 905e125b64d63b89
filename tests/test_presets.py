"""Presets: every file parses, the released ones say what MODELS.md says, and each tiny preset agrees with
the folder vidgen.weights.tiny builds for it."""

import diffusers
import pytest

from vidgen.families import registry
from vidgen.families.cogvideox.info import read_cogvideox_info
from vidgen.families.helios.info import read_helios_info
from vidgen.validate.runtime import DTYPES
from vidgen.weights.presets import (
    PRESET_DIR,
    close_names,
    closest_preset,
    find_preset,
    load_preset,
    load_presets,
    match_preset,
)

PRESETS = load_presets()
RELEASED = [p for p in PRESETS.values() if not p.is_tiny]
TINY = [p for p in PRESETS.values() if p.is_tiny]


def test_every_file_is_a_preset_named_like_its_file():
    files = sorted(PRESET_DIR.glob("*.toml"))
    assert len(files) == len(PRESETS) >= 8
    assert {path.stem for path in files} == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: p.name)
def test_defaults_obey_the_presets_own_rules(preset):
    assert preset.family in ("cogvideox", "helios", "wan")
    assert set(preset.modes) <= {"t2v", "i2v", "v2v"} and preset.modes
    assert preset.dtype in DTYPES
    assert preset.height % 16 == 0 and preset.width % 16 == 0
    assert preset.frames <= preset.max_frames
    if preset.family == "helios":
        # Whole 33-frame chunks, cut to 4k+1 frames as diffusers cuts them: what the video will have.
        chunks = -(-preset.frames // 33)
        assert preset.frames == (chunks * 33 - 1) // 4 * 4 + 1 and preset.frame_step == 33
        assert not preset.dynamic_cfg
        return
    if preset.family == "wan":
        # 4k+1: the Wan VAE decodes k+1 latent frames to exactly 4k+1 frames.
        assert (preset.frames - 1) % 4 == 0 and preset.frame_step == 4
        assert not preset.dynamic_cfg
        return
    # 8k+1: 4 frames per latent frame, and an odd number of latent frames, which the VAE decodes
    # to exactly this many frames (see ModelInfo.decoded_frames).
    assert (preset.frames - 1) % 8 == 0
    assert (preset.frames - 1) % preset.frame_step == 0
    scheduler = dict(preset.scheduler)
    if "_class_name" in scheduler:
        assert hasattr(diffusers, scheduler["_class_name"])


def test_released_presets_match_the_model_cards():
    facts = {
        # name: (repo, dtype, height, width, frames, fps, modes)
        "cogvideox-2b": ("THUDM/CogVideoX-2b", "fp16", 480, 720, 49, 8, ("t2v", "v2v")),
        "cogvideox-5b": ("THUDM/CogVideoX-5b", "bf16", 480, 720, 49, 8, ("t2v", "v2v")),
        "cogvideox-5b-i2v": ("THUDM/CogVideoX-5b-I2V", "bf16", 480, 720, 49, 8, ("i2v",)),
        "cogvideox1.5-5b": ("THUDM/CogVideoX1.5-5B", "bf16", 768, 1360, 81, 16, ("t2v", "v2v")),
        "cogvideox1.5-5b-i2v": ("THUDM/CogVideoX1.5-5B-I2V", "bf16", 768, 1360, 81, 16, ("i2v",)),
        # 97 frames: the authors' 99 (3 chunks) as the video has them; 261: their 240 (8 chunks).
        "helios-base": ("BestWishYsh/Helios-Base", "bf16", 384, 640, 97, 24, ("t2v", "i2v", "v2v")),
        "helios-mid": ("BestWishYsh/Helios-Mid", "bf16", 384, 640, 97, 24, ("t2v", "i2v", "v2v")),
        "helios-distilled": (
            "BestWishYsh/Helios-Distilled",
            "bf16",
            384,
            640,
            261,
            24,
            ("t2v", "i2v", "v2v"),
        ),
    }
    assert {p.name for p in RELEASED} == set(facts)
    for name, fact in facts.items():
        p = PRESETS[name]
        assert (p.source, p.dtype, p.height, p.width, p.frames, p.fps, p.modes) == fact


def test_5b_and_1_5_presets_sample_as_the_authors_do():
    for preset in (p for p in RELEASED if p.family == "cogvideox"):
        scheduler = dict(preset.scheduler)
        if preset.name == "cogvideox-2b":
            assert scheduler == {} and not preset.dynamic_cfg
        else:
            assert scheduler == {"_class_name": "CogVideoXDPMScheduler", "timestep_spacing": "trailing"}
            assert preset.dynamic_cfg


def test_helios_presets_sample_as_the_authors_scripts_do():
    # scripts/inference/helios-*_t2v.sh: (steps, per pyramid stage for Mid and Distilled; guidance;
    # amplified first chunk). The scheduler is each folder's own, as the scripts load it.
    facts = {
        "helios-base": (50, 5.0, False),
        "helios-mid": (20, 5.0, False),
        "helios-distilled": (2, 1.0, True),
    }
    for name, fact in facts.items():
        preset = PRESETS[name]
        assert (preset.steps, preset.guidance, preset.amplify_first_chunk) == fact
        assert preset.scheduler == ()


@pytest.mark.parametrize("preset", [p for p in TINY if p.family == "helios"], ids=lambda p: p.name)
def test_tiny_helios_preset_agrees_with_the_folder_built_for_it(preset):
    family, variant = preset.tiny_variant
    info = read_helios_info(registry.ensure_tiny(family, variant))
    assert (info.architecture, info.modes) == (preset.architecture, preset.modes)
    assert (
        preset.dtype == "fp32"
        and preset.height % info.size_multiple == 0
        and preset.width % info.size_multiple == 0
    )
    assert preset.frames == 33 and preset.steps <= 2  # one chunk, fast


@pytest.mark.parametrize("preset", [p for p in TINY if p.family == "cogvideox"], ids=lambda p: p.name)
def test_tiny_preset_agrees_with_the_folder_built_for_it(preset):
    family, variant = preset.tiny_variant
    assert (preset.dtype, preset.height, preset.width) == ("fp32", 64, 96) and preset.steps <= 4
    info = read_cogvideox_info(registry.ensure_tiny(family, variant))
    assert (info.architecture, info.modes) == (preset.architecture, preset.modes)
    if info.fixed_size:
        assert (preset.height, preset.width, preset.frames) == info.sample_size


def test_a_folder_gets_the_released_preset_of_its_architecture():
    def released(preset):
        return True

    assert match_preset("cogvideox-sincos", ("t2v", "v2v"), PRESETS, released).name == "cogvideox-2b"
    assert match_preset("cogvideox-learned", ("i2v",), PRESETS, released).name == "cogvideox-5b-i2v"
    assert match_preset("cogvideox1.5", ("i2v",), PRESETS, released).name == "cogvideox1.5-5b-i2v"
    # A CogVideoX shape no preset has (an I2V fine-tune of 2b, say) gets no preset, but starts from the
    # general settings of one with its modes.
    assert match_preset("cogvideox-sincos", ("i2v",), PRESETS, released) is None
    assert closest_preset("cogvideox-sincos", ("i2v",), PRESETS).name == "cogvideox-5b-i2v"
    assert match_preset("helios", ("t2v",), PRESETS, released) is None
    everything = ("t2v", "i2v", "v2v")
    for name in ("helios-base", "helios-mid", "helios-distilled"):
        assert match_preset(name, everything, PRESETS, released).name == name


def test_names_are_found_ignoring_case_and_close_names_are_suggested():
    assert find_preset("CogVideoX-5b", PRESETS).name == "cogvideox-5b"
    assert close_names("cogvideox-3b", PRESETS)[0] in ("cogvideox-5b", "cogvideox-2b")
    assert close_names("tiny", PRESETS) and all(n.startswith("tiny-") for n in close_names("tiny", PRESETS))
    assert "tiny-cogvideox" in close_names("tiny-cogvideo", PRESETS)
    assert len(close_names("cogvideo", PRESETS)) <= 3


def test_a_preset_file_with_an_unknown_or_missing_key_is_named(tmp_path):
    text = (PRESET_DIR / "tiny-cogvideox.toml").read_text()
    (tmp_path / "typo.toml").write_text(text.replace("guidance =", "guidence ="))
    with pytest.raises(
        ValueError, match=r"typo.toml: unknown keys \['guidence'\], missing keys \['guidance'\]"
    ):
        load_preset(tmp_path / "typo.toml")


def test_two_presets_with_one_name_keep_the_first_and_warn(tmp_path):
    text = (PRESET_DIR / "tiny-cogvideox.toml").read_text()
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "b.toml").write_text(text.replace("steps = 4", "steps = 3"))
    warnings = []
    presets = load_presets(tmp_path, warn=warnings.append)
    assert presets["tiny-cogvideox"].steps == 4
    assert len(warnings) == 1 and "b.toml" in warnings[0] and "already used" in warnings[0]

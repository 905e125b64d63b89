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
        "wan2.1-t2v-1.3b": ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "bf16", 480, 832, 81, 16, ("t2v", "v2v")),
        "wan2.1-t2v-14b": ("Wan-AI/Wan2.1-T2V-14B-Diffusers", "bf16", 720, 1280, 81, 16, ("t2v", "v2v")),
        "wan2.1-i2v-14b-480p": ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "bf16", 480, 832, 81, 16, ("i2v",)),
        "wan2.1-i2v-14b-720p": ("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "bf16", 720, 1280, 81, 16, ("i2v",)),
        "wan2.2-t2v-a14b": ("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "bf16", 720, 1280, 81, 16, ("t2v",)),
        "wan2.2-i2v-a14b": ("Wan-AI/Wan2.2-I2V-A14B-Diffusers", "bf16", 720, 1280, 81, 16, ("i2v",)),
        "wan2.2-ti2v-5b": ("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "bf16", 704, 1280, 121, 24, ("t2v", "i2v")),
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


def test_wan_presets_sample_as_the_authors_do():
    # (steps, guidance, guidance of the low-noise expert, flow_shift override): the model cards and
    # diffusers' Wan docs for 2.1 (shift 3.0 at 480p is the repos' own, 5.0 at 720p); the authors'
    # wan/configs for 2.2 (sample_shift 12.0 / 5.0, guidance (low, high) noise (3.0, 4.0) / (3.5, 3.5)).
    facts = {
        "wan2.1-t2v-1.3b": (50, 5.0, None, None),
        "wan2.1-t2v-14b": (50, 5.0, None, 5.0),
        "wan2.1-i2v-14b-480p": (50, 5.0, None, None),
        "wan2.1-i2v-14b-720p": (50, 5.0, None, 5.0),
        "wan2.2-t2v-a14b": (40, 4.0, 3.0, 12.0),
        "wan2.2-i2v-a14b": (40, 3.5, 3.5, 5.0),
        "wan2.2-ti2v-5b": (50, 5.0, None, None),
    }
    assert {p.name for p in RELEASED if p.family == "wan"} == set(facts)
    for name, fact in facts.items():
        preset = PRESETS[name]
        scheduler = dict(preset.scheduler)
        assert (preset.steps, preset.guidance, preset.guidance_2, scheduler.get("flow_shift")) == fact, name
        assert set(scheduler) <= {"flow_shift"}


def test_released_wan_download_sizes_add_up_the_repos_weights():
    # Parameter bytes of each part as the repos store it (the index files' total_size), counted from the
    # released configs: UMT5-XXL fp32 (2.1) or bf16 (2.2), transformers fp32, CLIP ViT-H half, VAEs fp32.
    umt5_fp32, umt5_bf16 = 22_723_641_344, 11_361_820_672
    vae, vae_2_2, clip = 507_570_124, 2_818_754_672, 1_261_532_160
    tokenizer = 21_500_000
    weights = {
        "wan2.1-t2v-1.3b": umt5_fp32 + 5_675_987_200 + vae,
        "wan2.1-t2v-14b": umt5_fp32 + 57_153_966_336 + vae,
        "wan2.1-i2v-14b-480p": umt5_fp32 + 65_579_515_136 + clip + vae,
        "wan2.1-i2v-14b-720p": umt5_fp32 + 65_579_515_136 + clip + vae,
        "wan2.2-t2v-a14b": umt5_bf16 + 2 * 57_153_966_336 + vae,
        "wan2.2-i2v-a14b": umt5_bf16 + 2 * 57_155_604_736 + vae,
        "wan2.2-ti2v-5b": umt5_bf16 + 19_999_150_848 + vae_2_2,
    }
    for name, total in weights.items():
        assert abs(PRESETS[name].download_bytes - (total + tokenizer)) < 1_000_000, name


@pytest.mark.parametrize(
    "name, config",
    [
        ("wan2.1-t2v-1.3b", dict(num_attention_heads=12, ffn_dim=8960, num_layers=30)),
        ("wan2.1-t2v-14b", {}),
        ("wan2.1-i2v-14b-480p", dict(in_channels=36, image_dim=1280, added_kv_proj_dim=5120)),
        ("wan2.2-t2v-a14b", {}),
        ("wan2.2-i2v-a14b", dict(in_channels=36)),
        (
            "wan2.2-ti2v-5b",
            dict(num_attention_heads=24, num_layers=30, ffn_dim=14336, in_channels=48, out_channels=48),
        ),
    ],
)
def test_wan_transformer_tables_build_the_released_parameter_counts(name, config):
    # diffusers' conversion script's configs; the parameter counts are those of the repos' index files
    # (fp32: 4 bytes each), so the table is the released shape and the download size counts it.
    from accelerate import init_empty_weights

    assert dict(PRESETS[name].transformer) == config
    with init_empty_weights():
        model = diffusers.WanTransformer3DModel(**config)
    count = sum(tensor.numel() for tensor in model.state_dict().values())
    expected = {
        "wan2.1-t2v-1.3b": 1_418_996_800,
        "wan2.1-t2v-14b": 14_288_491_584,
        "wan2.1-i2v-14b-480p": 16_394_878_784,
        "wan2.2-t2v-a14b": 14_288_491_584,
        "wan2.2-i2v-a14b": 14_288_901_184,
        "wan2.2-ti2v-5b": 4_999_787_712,
    }
    assert count == expected[name]


def test_preset_guidance_2_and_download_bytes_are_checked(tmp_path):
    base = (PRESET_DIR / "wan2.1-t2v-1.3b.toml").read_text()
    (tmp_path / "a.toml").write_text(base.replace("guidance = 5.0", "guidance = 5.0\nguidance_2 = 3"))
    assert load_preset(tmp_path / "a.toml").guidance_2 == 3.0
    (tmp_path / "b.toml").write_text(base.replace("guidance = 5.0", 'guidance = 5.0\nguidance_2 = "3"'))
    with pytest.raises(ValueError, match="guidance_2"):
        load_preset(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text(base.replace("28_929_000_000", "-1"))
    with pytest.raises(ValueError, match="download_bytes"):
        load_preset(tmp_path / "c.toml")
    assert load_preset(PRESET_DIR / "tiny-wan.toml").download_bytes == 0


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

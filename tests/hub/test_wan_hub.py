"""`vidgen download` and `vidgen models` on the Wan-AI repos: the parts beyond text encoder, transformer
and VAE (Wan 2.2 A14B's second expert, Wan 2.1 I2V's CLIP image encoder and processor) are fetched,
checked and counted like the others; a pipeline without one of them (diffusers' [null, null]) is whole."""

import json
import shutil

import pytest
import tiny_hub
from fake_hub import FakeHub

from vidgen.core.errors import VidgenError
from vidgen.weights.model_check import check_configs, check_model

# What the Wan-AI repos hold beside the files vidgen reads.
UNNEEDED = {"README.md": b"# Wan", "examples/i2v_input.JPG": b"\xff\xd8" * 10, ".gitattributes": b"*"}
A14B, I2V = "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
TINY_ARGS = ("--height", "32", "--width", "48", "--frames", "9", "--steps", "1", "--dtype", "fp32")
# The classes a Wan row would name for the optional parts (None: a pipeline may go without).
OPTIONAL = {
    "transformer_2": ("WanTransformer3DModel", None),
    "image_encoder": ("CLIPVisionModel", None),
    "image_processor": ("CLIPImageProcessor", None),
}
BASE = {
    "text_encoder": ("UMT5EncoderModel",),
    "transformer": ("WanTransformer3DModel",),
    "vae": ("AutoencoderKLWan",),
    "scheduler": ("UniPCMultistepScheduler",),
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """preset -> its published layout with tiny weights (built on first use)."""
    root, built = tmp_path_factory.mktemp("wan-repos"), {}

    def layout(preset):
        if preset not in built:
            built[preset] = tiny_hub.write_published(root / preset, preset)
        return built[preset]

    return layout


def serve(layouts, hub_env, monkeypatch, tmp_path, preset):
    hub_env(tmp_path / "cache")
    hub = FakeHub(tiny_hub.PUBLISHED[preset].repo_id, layouts(preset), UNNEEDED)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return hub


def fetched(hub):
    return sorted(path.split(tiny_hub.COMMIT + "/")[1] for method, path, _ in hub.requests if method == "GET"
                  and "/resolve/" in path)  # fmt: skip


def row(stdout, name):
    return next(line for line in stdout.splitlines() if f" {name} " in line)


def test_download_fetches_both_experts_of_wan_2_2_a14b(layouts, hub_env, monkeypatch, tmp_path, invoke_cli):
    with serve(layouts, hub_env, monkeypatch, tmp_path, "wan2.2-t2v-a14b") as hub:
        run = invoke_cli("download", "wan2.2-t2v-a14b")
        assert run.exit_code == 0, run.stderr
    needed = {name for name in hub.files if name not in UNNEEDED}
    assert set(fetched(hub)) <= needed  # a file with the same bytes as one fetched is linked, not fetched
    snapshot = (
        tmp_path / "cache" / "models--Wan-AI--Wan2.2-T2V-A14B-Diffusers" / "snapshots" / tiny_hub.COMMIT
    )
    assert {path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file()} == needed
    second = [name for name in fetched(hub) if name.startswith("transformer_2/diffusion_pytorch_model-")]
    assert len(second) == 12
    monkeypatch.setenv("COLUMNS", "200")
    assert "KB" in row(invoke_cli("models").stdout, "wan2.2-t2v-a14b")


def test_dry_run_lists_the_clip_image_encoder_and_processor_of_wan_2_1_i2v(
    layouts, hub_env, monkeypatch, tmp_path, invoke_cli
):
    with serve(layouts, hub_env, monkeypatch, tmp_path, "wan2.1-i2v-14b-480p") as hub:
        run = invoke_cli("download", "wan2.1-i2v-14b-480p", "--dry-run")
    assert run.exit_code == 0, run.stderr
    listed = [line.split()[0] for line in run.stdout.splitlines()[:-1]]
    assert listed == sorted(name for name in hub.files if name not in UNNEEDED)
    for name in ("image_encoder/model.safetensors", "image_processor/preprocessor_config.json"):
        assert name in listed


def test_download_of_wan_2_1_i2v_is_verified(layouts, hub_env, monkeypatch, tmp_path, invoke_cli):
    with serve(layouts, hub_env, monkeypatch, tmp_path, "wan2.1-i2v-14b-480p"):
        run = invoke_cli("download", "wan2.1-i2v-14b-480p")
    assert run.exit_code == 0, run.stderr
    assert "complete and verified" in run.stdout


def test_models_says_partly_for_a_truncated_second_expert(own_cache, hub_env, monkeypatch, invoke_cli):
    cache, snapshot = own_cache("wan2.2-t2v-a14b")
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    whole = row(invoke_cli("models").stdout, "wan2.2-t2v-a14b")
    assert "KB" in whole and "partly" not in whole
    blob = (snapshot / "transformer_2" / "diffusion_pytorch_model-00012-of-00012.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-100])
    assert "partly" in row(invoke_cli("models").stdout, "wan2.2-t2v-a14b")


def test_a_missing_second_expert_shard_is_named(layouts, tmp_path):
    folder = tmp_path / "a14b"
    shutil.copytree(layouts("wan2.2-t2v-a14b"), folder)
    (folder / "transformer_2" / "diffusion_pytorch_model-00003-of-00012.safetensors").unlink()
    with pytest.raises(VidgenError, match=r"transformer_2/diffusion_pytorch_model-00003-of-00012.*missing"):
        check_model(folder, "", BASE)


@pytest.mark.parametrize(
    "preset",
    ["wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"],
)
def test_optional_parts_may_be_absent_or_null_and_are_checked_when_named(layouts, preset):
    folder = layouts(preset)
    check_configs(folder, "", {**BASE, **OPTIONAL})


def test_a_named_optional_part_of_a_class_vidgen_does_not_run_is_refused(layouts, tmp_path):
    folder = tmp_path / "i2v"
    shutil.copytree(layouts("wan2.1-i2v-14b-480p"), folder)
    config = folder / "image_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "architectures": ["SiglipVisionModel"]}))
    with pytest.raises(VidgenError, match="image_encoder class 'SiglipVisionModel'") as error:
        check_configs(folder, "", {**BASE, **OPTIONAL})
    assert error.value.hint == "use a model whose image_encoder is CLIPVisionModel"


@pytest.mark.parametrize(
    ("preset", "component", "key"),
    [
        ("wan2.2-t2v-a14b", "transformer_2", "ffn_dim"),
        ("wan2.1-i2v-14b-480p", "image_encoder", "intermediate_size"),
    ],
)
def test_the_second_expert_and_the_image_encoder_are_shape_checked_against_their_configs(
    layouts, tmp_path, preset, component, key
):
    folder = tmp_path / preset
    shutil.copytree(layouts(preset), folder)
    check_model(folder, "download it again", {**BASE, **OPTIONAL})  # whole as published
    config = folder / component / "config.json"
    values = json.loads(config.read_text())
    config.write_text(json.dumps({**values, key: values[key] * 2}))
    with pytest.raises(
        VidgenError, match=rf"^'{folder / component}/.*safetensors' holds .* but {component}/config"
    ):
        check_model(folder, "download it again", {**BASE, **OPTIONAL})

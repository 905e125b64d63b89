"""`--lora` on Wan 2.1 in the layouts people publish, for the tiny transformer's shapes: diffusers' own
(PEFT keys, saved by `WanPipeline.save_lora_weights`), lightx2v's step-distilled StepDistill-CfgDistill
LoRA (original Wan key names, `lora_down` / `lora_up` / `alpha`, bias differences `diff_b`, zeroed norm
differences `diff`, the embeddings, the time projection and the head) and CausVid's (the same names
without alphas). vidgen fuses each through diffusers' converter; the frames equal diffusers' WanPipeline
after `load_lora_weights` of the same file, computed here.
"""

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches, read_png_folder
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

SEED = 7
RANK = 4
PROMPT = "a cat walks"
# The tiny transformer (vidgen.families.wan.tiny): width 24 (2 heads x 12), feed-forward 32, text 32,
# time frequencies 32, 2 blocks, 16 channels out in 1x2x2 patches.
WIDTH, FFN, TEXT, FREQ, OUT, BLOCKS = 24, 32, 32, 32, 64, 2
INPUTS = dict(height=32, width=48, num_frames=9, num_inference_steps=2, guidance_scale=5.0)


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder("wan", "t2v")


def original_layer(name: str, shape: tuple[int, int], generator, alpha: bool, bias: bool = True) -> dict:
    """One Linear's LoRA in the original Wan trainers' layout (`name` as the Wan repo names the layer)."""
    fan_in, fan_out = shape
    layer = {
        f"diffusion_model.{name}.lora_down.weight": torch.randn(RANK, fan_in, generator=generator) * 0.3,
        f"diffusion_model.{name}.lora_up.weight": torch.randn(fan_out, RANK, generator=generator) * 0.3,
    }
    if alpha:  # rank 4, alpha 8: the converter scales the matrices by alpha / rank
        layer[f"diffusion_model.{name}.alpha"] = torch.tensor(2.0 * RANK)
    if bias:
        layer[f"diffusion_model.{name}.diff_b"] = torch.randn(fan_out, generator=generator) * 0.1
    return layer


def original_layout(seed: int, alpha: bool) -> dict[str, torch.Tensor]:
    """A LoRA on every linear layer of the blocks, the embeddings, time projection and head, in bf16
    (as lightx2v and Kijai publish them), with the zeroed norm differences those files carry."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    square = (WIDTH, WIDTH)
    for block in range(BLOCKS):
        prefix = f"blocks.{block}"
        for attention in ("self_attn", "cross_attn"):
            for projection in "qkvo":
                state |= original_layer(f"{prefix}.{attention}.{projection}", square, generator, alpha)
            for norm in ("norm_q", "norm_k"):
                state[f"diffusion_model.{prefix}.{attention}.{norm}.diff"] = torch.zeros(WIDTH)
        state |= original_layer(f"{prefix}.ffn.0", (WIDTH, FFN), generator, alpha)
        state |= original_layer(f"{prefix}.ffn.2", (FFN, WIDTH), generator, alpha)
        state[f"diffusion_model.{prefix}.norm3.diff"] = torch.zeros(WIDTH)
        state[f"diffusion_model.{prefix}.norm3.diff_b"] = torch.zeros(WIDTH)
    for name, shape in {
        "text_embedding.0": (TEXT, WIDTH),
        "text_embedding.2": square,
        "time_embedding.0": (FREQ, WIDTH),
        "time_embedding.2": square,
        "time_projection.1": (WIDTH, 6 * WIDTH),
        "head.head": (WIDTH, OUT),
    }.items():
        state |= original_layer(name, shape, generator, alpha=False)
    return {key: value.to(torch.bfloat16) for key, value in state.items()}


def diffusers_layout(folder, path) -> None:
    """A rank-4 PEFT LoRA on the blocks' attention and feed-forward, saved by diffusers' WanPipeline."""
    transformer = diffusers.WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    torch.manual_seed(0)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2"]
    transformer.add_adapter(
        LoraConfig(r=RANK, lora_alpha=8, init_lora_weights=False, target_modules=targets), "trained"
    )
    with torch.no_grad():  # PEFT's random B is small: scaled up, the video changes far past the bound
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.mul_(2.0)
    diffusers.WanPipeline.save_lora_weights(
        path.parent,
        transformer_lora_layers=get_peft_model_state_dict(transformer, adapter_name="trained"),
        transformer_lora_adapter_metadata=transformer.peft_config["trained"].to_dict(),
        weight_name=path.name,
    )


@pytest.fixture(scope="module")
def loras(folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-loras")
    files = {name: root / f"{name}.safetensors" for name in ("diffusers", "lightx2v", "causvid")}
    diffusers_layout(folder, files["diffusers"])
    save_file(original_layout(seed=1, alpha=True), files["lightx2v"])
    save_file(original_layout(seed=2, alpha=False), files["causvid"])
    return files


def diffusers_frames(folder, lora=None, scale: float = 1.0, scheduler=None, **inputs) -> np.ndarray:
    """diffusers' WanPipeline with `load_lora_weights(lora)` at `scale`, as uint8 frames."""
    pipe = diffusers.WanPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = scheduler(pipe.scheduler.config)
    if lora is not None:
        pipe.load_lora_weights(lora, adapter_name="lora")
        pipe.set_adapters(["lora"], [scale])
    generator = torch.Generator("cpu").manual_seed(SEED)
    frames = pipe(prompt=PROMPT, negative_prompt="", generator=generator, output_type="np", **inputs).frames[
        0
    ]
    return (frames * 255).round().astype(np.uint8)


def vidgen_frames(vidgen, workdir, *options: str) -> np.ndarray:
    run = vidgen(
        "t2v", "-m", "tiny-wan", PROMPT, "--seed", str(SEED), "--format", "png", "-o", "out", "--overwrite",
        "--quiet", "--device", "cpu", *options,
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    return read_png_folder(workdir / "out")


@pytest.fixture(scope="module")
def without_lora(folder):
    return diffusers_frames(folder, **INPUTS)


@pytest.mark.parametrize(("layout", "scale"), [("diffusers", 1.0), ("lightx2v", 1.0), ("causvid", 0.6)])
def test_each_published_layout_changes_the_frames_as_diffusers_load_lora_weights_does(
    vidgen, offline_workdir, folder, loras, without_lora, layout, scale
):
    reference = diffusers_frames(folder, loras[layout], scale, **INPUTS)
    assert np.abs(reference.astype(int) - without_lora).mean() > 3  # the LoRA moves the video
    frames = vidgen_frames(vidgen, offline_workdir, "--steps", "2", "--lora", f"{loras[layout]}:{scale}")
    assert_uint8_matches(frames, reference)


def test_the_original_layout_reaches_every_layer_it_names(folder, loras):
    """The bias differences, embeddings, time projection and head all land: none is dropped unnoticed."""
    from vidgen.families import registry
    from vidgen.families.wan.model import WanTransformer3DModel
    from vidgen.runtime.lora import check_lora, fuse_loras

    notes: list[str] = []
    lora = check_lora(str(loras["lightx2v"]), registry.family("wan"), folder, notes)
    assert notes == []  # every layer the file names is in the model
    base = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    fused = fuse_loras(WanTransformer3DModel.from_pretrained(folder, subfolder="transformer"), (lora,))
    changed = {name for name, value in fused.state_dict().items() if not torch.equal(value, base[name])}
    for layer in (
        "blocks.1.attn2.to_out.0",
        "blocks.0.ffn.net.0.proj",
        "condition_embedder.text_embedder.linear_1",
        "condition_embedder.time_embedder.linear_2",
        "condition_embedder.time_proj",
        "proj_out",
    ):
        assert {f"{layer}.weight", f"{layer}.bias"} <= changed, layer
    assert not any("norm" in name for name in changed)  # the zeroed norm differences change nothing


# --- the 4-step recipe ---------------------------------------------------------------------------------
# lightx2v's configs for this LoRA (configs/distill/wan21/wan_t2v_distill_lora_4step_cfg.json in
# ModelTC/LightX2V): 4 steps, no classifier-free guidance, sample_shift 5, denoising_step_list
# [1000, 750, 500, 250]: shifted by 5 those are the timesteps it was trained at.
RECIPE = ("--steps", "4", "--guidance", "1", "--flow-shift", "5")
TRAINED_TIMESTEPS = [1000.0, 937.5, 833.3, 625.0]


def unipc_shift_5(config):
    return diffusers.UniPCMultistepScheduler.from_config(config, flow_shift=5.0)


def test_the_folders_sampler_at_shift_5_steps_through_the_timesteps_lightx2v_trained_at(folder):
    scheduler = unipc_shift_5(diffusers.UniPCMultistepScheduler.load_config(folder, subfolder="scheduler"))
    scheduler.set_timesteps(4)
    assert np.allclose(scheduler.timesteps.float(), TRAINED_TIMESTEPS, atol=1.5)


def test_the_4_step_recipe_equals_diffusers_wan_pipeline_with_the_lora_at_shift_5(
    vidgen, offline_workdir, folder, loras
):
    frames = vidgen_frames(vidgen, offline_workdir, *RECIPE, "--lora", str(loras["lightx2v"]))
    sidecar = (offline_workdir / "out.json").read_text()
    assert '"flow_shift": 5.0' in sidecar and "--flow-shift=5.0" in sidecar  # its command replays it
    inputs = {**INPUTS, "num_inference_steps": 4, "guidance_scale": 1.0}
    reference = diffusers_frames(folder, loras["lightx2v"], scheduler=unipc_shift_5, **inputs)
    assert_uint8_matches(frames, reference)
    default_shift = diffusers_frames(folder, loras["lightx2v"], **inputs)
    assert np.abs(reference.astype(int) - default_shift).mean() > 1  # the shift is not a no-op


def test_a_preset_file_carries_the_recipe_as_the_options_do(vidgen, offline_workdir, loras, monkeypatch):
    from vidgen.weights.presets import PRESET_DIR

    text = (PRESET_DIR / "tiny-wan.toml").read_text()
    text = text.replace('name = "tiny-wan"', 'name = "tiny-wan-4step"')
    text = text.replace("steps = 2", "steps = 4").replace("guidance = 5.0", "guidance = 1.0")
    text += f'lora = "{loras["lightx2v"]}"\n\n[scheduler]\nflow_shift = 5.0\n'
    (offline_workdir / "presets").mkdir()
    (offline_workdir / "presets" / "tiny-wan-4step.toml").write_text(text)
    monkeypatch.setenv("VIDGEN_PRESETS", str(offline_workdir / "presets"))
    flags = vidgen_frames(vidgen, offline_workdir, *RECIPE, "--lora", str(loras["lightx2v"]))
    run = vidgen(
        "t2v", "-m", "tiny-wan-4step", PROMPT, "--seed", str(SEED), "--format", "png", "-o", "preset",
        "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert np.array_equal(read_png_folder(offline_workdir / "preset"), flags)


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("tiny-cogvideox", "--flow-shift sets a flow-matching sampler's shift; CogVideoX's sampler has none"),
        ("tiny-wan", "--flow-shift 0 is too small (at least 0.1)"),
    ],
)
def test_a_flow_shift_that_cannot_apply_is_one_line_before_loading(vidgen, offline_workdir, model, error):
    shift = "0" if model == "tiny-wan" else "5"
    run = vidgen("t2v", "-m", model, "a cat", "--flow-shift", shift, "-o", "out.mp4")
    assert run.exit_code == 2, run.stderr
    assert len(run.stderr_lines) == 1 and error in run.stderr
    assert not (offline_workdir / "out.mp4").exists()


def test_flow_match_euler_takes_the_shift_under_its_own_name(folder):
    from vidgen.core.request import Request, Runtime
    from vidgen.families.wan import pipeline as wan

    model = wan.load(folder, Runtime())
    scheduler = (("_class_name", "FlowMatchEulerDiscreteScheduler"), ("flow_shift", 5.0))
    request = Request(mode="t2v", prompt="a cat", scheduler=scheduler)
    chosen = wan._scheduler(model, request)
    assert isinstance(chosen, diffusers.FlowMatchEulerDiscreteScheduler) and chosen.config.shift == 5.0


def test_a_batch_job_may_set_its_flow_shift(vidgen, offline_workdir, loras):
    import json

    jobs = [
        {"name": "recipe", "prompt": PROMPT, "steps": 4, "guidance": 1.0, "flow_shift": 5.0},
        {"name": "plain", "prompt": PROMPT, "steps": 4, "guidance": 1.0},
    ]
    (offline_workdir / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    lora = ("--lora", str(loras["lightx2v"]))
    common = ("-m", "tiny-wan", "--seed", str(SEED), "--format", "png", "--quiet", "--device", "cpu", *lora)
    run = vidgen("batch", "jobs.jsonl", "-o", "batch", *common)
    assert run.exit_code == 0, run.stderr
    recipe = read_png_folder(offline_workdir / "batch" / "recipe")
    assert np.array_equal(recipe, vidgen_frames(vidgen, offline_workdir, *RECIPE, *lora))
    assert not np.array_equal(recipe, read_png_folder(offline_workdir / "batch" / "plain"))


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (
            ("--flow-shift", "5"),
            "--flow-shift sets a flow-matching sampler's shift; CogVideoX's sampler has none",
        ),
        (("--guidance-2", "3"), "--guidance-2 is for a model of two experts (Wan 2.2 A14B)"),
    ],
)
def test_a_batch_option_the_model_cannot_take_stops_the_batch_up_front(
    vidgen, offline_workdir, option, error
):
    (offline_workdir / "jobs.jsonl").write_text('{"prompt": "a cat"}\n{"prompt": "a dog"}\n')
    run = vidgen("batch", "jobs.jsonl", "-m", "tiny-cogvideox", *option, "-o", "out", "--device", "cpu")
    assert run.exit_code == 2, run.stderr
    assert len(run.stderr_lines) == 1 and error in run.stderr and "Traceback" not in run.stderr
    assert not (offline_workdir / "out").exists()


def test_a_jobs_own_flow_shift_on_a_model_without_one_fails_that_job_alone(vidgen, offline_workdir):
    (offline_workdir / "jobs.jsonl").write_text('{"prompt": "a cat", "flow_shift": 5}\n')
    run = vidgen("batch", "jobs.jsonl", "-m", "tiny-cogvideox", "-o", "out", "--device", "cpu", "-q")
    assert run.exit_code == 1, run.stderr
    assert "jobs.jsonl:1: --flow-shift sets a flow-matching sampler's shift" in run.stderr

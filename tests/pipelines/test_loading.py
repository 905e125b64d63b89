"""Loading a model folder: safetensors only, the scheduler the folder names, clear errors for bad folders."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vidgen.core.errors import VidgenError
from vidgen.core.request import Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.weights import loading


def test_pickled_weights_are_refused_not_unpickled(tiny_cogvideox, tmp_path, monkeypatch):
    folder = shutil.copytree(tiny_cogvideox("t2v"), tmp_path / "pickled")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "vae" / "diffusion_pytorch_model.bin")
    weights.unlink()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a pickled checkpoint was opened")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(OSError, match="safetensors"):
        cogvideox.load(folder, Runtime())


def test_a_folder_without_model_index_is_a_user_error(tmp_path):
    with pytest.raises(VidgenError, match="not a diffusers model folder"):
        cogvideox.load(tmp_path, Runtime())


def test_a_scheduler_vidgen_does_not_run_is_a_user_error(tiny_cogvideox, tmp_path):
    folder = shutil.copytree(tiny_cogvideox("t2v"), tmp_path / "euler")
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "_class_name": "EulerDiscreteScheduler"}))
    with pytest.raises(VidgenError, match="EulerDiscreteScheduler"):
        loading.load_scheduler(folder, cogvideox.SCHEDULERS)


def test_place_follows_the_offload_mode():
    def layer():
        return torch.nn.Linear(2, 2)

    assert loading.place(layer(), Runtime(offload="none")).weight.device.type == "cpu"
    assert loading.place(layer(), Runtime(offload="model")).weight.device.type == "cpu"
    streamed = loading.place(layer(), Runtime(offload="sequential"))
    assert streamed.weight.device.type == "meta" and hasattr(streamed, "_hf_hook")
    assert streamed(torch.ones(1, 2)).shape == (1, 2)  # the hook brings the weights for the call


def test_text_encoder_class_comes_from_model_index(tmp_path):
    from vidgen.families.helios.tiny import build_tiny_helios

    folder = build_tiny_helios(tmp_path / "helios")
    assert type(loading.load_text_encoder(folder, torch.float32)).__name__ == "UMT5EncoderModel"


def test_unknown_text_encoder_class_is_a_one_line_error(tmp_path):
    (tmp_path / "model_index.json").write_text('{"text_encoder": ["transformers", "CLIPTextModel"]}')
    with pytest.raises(VidgenError, match="CLIPTextModel"):
        loading.load_text_encoder(tmp_path, torch.float32)


@pytest.mark.parametrize("error, parked", [(ValueError, True), (KeyboardInterrupt, False)])
def test_on_device_parks_after_an_error_but_not_when_interrupted(error, parked):
    module = torch.nn.Linear(2, 2)
    with pytest.raises(error), loading.on_device(module, Runtime(offload="model"), park="meta"):
        raise error
    assert (module.weight.device.type == "meta") is parked

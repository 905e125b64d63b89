"""Tiny CogVideoX folders, built once per test session and shared by the pipeline tests."""

import json
import shutil

import pytest

from vidgen.families.cogvideox import tiny as cogvideox_tiny


@pytest.fixture(scope="session")
def tiny_cogvideox(tmp_path_factory):
    """variant -> folder of a tiny CogVideoX model ("t2v", "i2v", "1.5-t2v", "1.5-i2v").

    "1.5-i2v-inverted" is 1.5-i2v with `invert_scale_latents` set in the VAE config, as the released
    CogVideoX1.5-5B-I2V has it.
    """
    root = tmp_path_factory.mktemp("tiny-cogvideox")
    built = {}

    def folder(variant: str):
        if variant not in built:
            if variant == "1.5-i2v-inverted":
                target = root / variant
                shutil.copytree(folder("1.5-i2v"), target)
                config_path = target / "vae" / "config.json"
                config = json.loads(config_path.read_text())
                config["invert_scale_latents"] = True
                config_path.write_text(json.dumps(config))
                built[variant] = target
            else:
                built[variant] = cogvideox_tiny.build_tiny_cogvideox(root / variant, variant=variant)
        return built[variant]

    return folder

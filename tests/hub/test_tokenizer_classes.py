"""Any tokenizer class transformers loads for the folder is accepted (diffusers loads it too); a class
transformers lacks, or one that cannot read the folder's files, is one line naming why, before the
text encoder's weights load."""

import json

import diffusers
import pytest
from transformers import PreTrainedTokenizerFast

from vidgen.weights import tiny

TINY_ARGS = ("--height", "64", "--width", "96", "--frames", "9", "--steps", "1", "--dtype", "fp32")


@pytest.fixture
def generic_tokenizer_folder(tiny_folder, tmp_path, monkeypatch):
    """The tiny CogVideoX saved by diffusers with transformers' generic tokenizers-backed tokenizer
    (`PreTrainedTokenizerFast`, which transformers 5 saves as `TokenizersBackend`)."""
    monkeypatch.chdir(tmp_path)
    pipeline = diffusers.CogVideoXPipeline.from_pretrained(tiny_folder("cogvideox", "t2v"))
    t5 = tiny.build_tokenizer(model_max_length=226)
    generic = PreTrainedTokenizerFast(
        tokenizer_object=t5.backend_tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=226,
    )
    pipeline.register_modules(tokenizer=generic)
    pipeline.save_pretrained(tmp_path / "generic")
    return tmp_path / "generic"


def test_a_folder_with_the_generic_tokenizers_backed_class_runs(generic_tokenizer_folder, invoke_cli):
    index = json.loads((generic_tokenizer_folder / "model_index.json").read_text())
    named = index["tokenizer"][1]
    assert named not in ("T5Tokenizer", "T5TokenizerFast")  # TokenizersBackend with transformers 5
    reloaded = diffusers.CogVideoXPipeline.from_pretrained(generic_tokenizer_folder)  # diffusers loads it
    assert type(reloaded.tokenizer).__name__ == named
    run = invoke_cli("t2v", "--model", str(generic_tokenizer_folder), "a cat", *TINY_ARGS, "-o", "out.mp4")
    assert run.exit_code == 0, (run.stderr, run.exception)


def one_line_error(run, *texts):
    assert run.exit_code == 2, (run.exit_code, run.stderr, run.exception)
    lines = [line for line in run.stderr_lines if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert all(text in lines[0] for text in texts), run.stderr


def set_tokenizer(folder, name):
    path = folder / "model_index.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "tokenizer": ["transformers", name]}))


def test_a_tokenizer_class_transformers_lacks_is_named_with_its_file(
    generic_tokenizer_folder, invoke_cli, monkeypatch
):
    set_tokenizer(generic_tokenizer_folder, "NoSuchTokenizer")
    run = invoke_cli("t2v", "--model", str(generic_tokenizer_folder), "a cat", *TINY_ARGS, "-o", "out.mp4")
    one_line_error(run, "model_index.json", "'NoSuchTokenizer'", "transformers")


def test_a_tokenizer_that_cannot_load_says_why_before_weights_load(
    generic_tokenizer_folder, invoke_cli, monkeypatch
):
    from vidgen.weights import loading

    def never_load(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(loading, "load_text_encoder", never_load)
    monkeypatch.setattr(loading, "load_diffusers_model", never_load)
    (generic_tokenizer_folder / "tokenizer" / "tokenizer.json").write_text('{"model": 5}')
    run = invoke_cli("t2v", "--model", str(generic_tokenizer_folder), "a cat", *TINY_ARGS, "-o", "out.mp4")
    one_line_error(run, str(generic_tokenizer_folder / "tokenizer"), "does not load as")

"""diffusers' own pipeline tests, run with diffusers' transformers and again with vidgen's in their place.

vidgen's `CogVideoXTransformer3DModel`, `HeliosTransformer3DModel` and `WanTransformer3DModel` are meant as
drop-ins: every test of diffusers' CogVideoX (T2V, I2V, V2V), Helios and Wan (2.1 T2V, I2V, V2V; 2.2
two-expert T2V and I2V, TI2V) pipeline suites that passes with diffusers' class should pass with vidgen's.
This runs those suites twice (pytest in a subprocess; the second run loads this file as a plugin that
swaps the classes before the test modules import them) and prints the tests that pass only with
diffusers' class; exit status 1 if there are any.

    python bench/diffusers_suites.py /path/to/diffusers/tests
    python bench/diffusers_suites.py /path/to/diffusers/tests -k fused   # extra pytest arguments
    python bench/diffusers_suites.py /path/to/diffusers/tests --suites wan  # the suites whose path has "wan"

The tests folder is a diffusers checkout's `tests/` at the installed version (its helpers import
`parameterized` and `requests_mock`: install them, or put them on PYTHONPATH). The suites' text encoder,
hf-internal-testing/tiny-random-t5, is replaced in both runs by a local stand-in of the same width (no
download; a T5 config and vidgen's tiny tokenizer in a throwaway hub cache), so tests that compare with
numbers recorded from the real one fail both ways and are not counted. (The Wan I2V suites' CLIP image
encoder is built by the tests themselves.)
"""

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

SUITES = (
    "pipelines/cogvideo/test_cogvideox.py",
    "pipelines/cogvideo/test_cogvideox_image2video.py",
    "pipelines/cogvideo/test_cogvideox_video2video.py",
    "pipelines/helios",
    "pipelines/wan/test_wan.py",
    "pipelines/wan/test_wan_22.py",
    "pipelines/wan/test_wan_image_to_video.py",
    "pipelines/wan/test_wan_22_image_to_video.py",
    "pipelines/wan/test_wan_video_to_video.py",
)
SWAP = "VIDGEN_SWAP_TRANSFORMERS"  # set in the second run's environment: this file, as a plugin, swaps
ROOT = Path(__file__).resolve().parents[1]


def swap_in_vidgen() -> None:
    """Put vidgen's transformers where diffusers' test modules and pipelines import them from."""
    import diffusers
    import diffusers.models
    import diffusers.models.transformers

    import vidgen.models

    for name in vidgen.models.__all__:
        for module in (diffusers, diffusers.models, diffusers.models.transformers):
            setattr(module, name, getattr(vidgen.models, name))


def stand_in_t5(hub_cache: Path) -> None:
    """Write tiny-random-t5's stand-in (config and tokenizer; the tests build the model) as a hub cache."""
    from vidgen.ui.console import quiet_libraries

    quiet_libraries()
    from transformers import T5Config

    from vidgen.weights.tiny import build_tokenizer

    repo = hub_cache / "models--hf-internal-testing--tiny-random-t5"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    # Width 32, the text width the suites' transformers are built for; the rest small, like the original.
    config = dict(d_model=32, d_kv=8, d_ff=37, num_layers=5, num_heads=4, relative_attention_num_buckets=8)
    T5Config(vocab_size=1103, **config).save_pretrained(snapshot)
    build_tokenizer(model_max_length=512).save_pretrained(snapshot)


def run(tests: Path, suites: list[str], swap: bool, extra: list[str]) -> dict[str, str]:
    """{test id: "passed" / "failed" / "skipped"} for one pytest run of the suites."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "bench"), env.get("PYTHONPATH")]))
    plugin = []
    if swap:
        env[SWAP] = "1"
        plugin = ["-p", "diffusers_suites"]
    with tempfile.TemporaryDirectory() as tmp:
        stand_in_t5(Path(tmp) / "hub")
        env.update(HF_HUB_CACHE=str(Path(tmp) / "hub"), HF_HUB_OFFLINE="1")
        report = Path(tmp) / "report.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin]
        command += [f"--junitxml={report}", *(f"{tests.name}/{suite}" for suite in suites), *extra]
        subprocess.run(command, cwd=tests.parent, env=env, stdout=subprocess.DEVNULL, check=False)
        return outcomes(report)


def outcomes(report: Path) -> dict[str, str]:
    results = {}
    for case in ET.parse(report).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        results[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tests", type=Path, help="a diffusers checkout's tests/ folder")
    parser.add_argument("--suites", default="", help="run only the suites whose path contains this")
    args, extra = parser.parse_known_args()
    suites = [suite for suite in SUITES if args.suites in suite]
    if not suites:
        parser.error(f"no suite's path contains {args.suites!r}; the suites: {', '.join(SUITES)}")
    sys.path.insert(0, str(ROOT))
    tests = args.tests.resolve()
    theirs, ours = run(tests, suites, False, extra), run(tests, suites, True, extra)
    passing = [test for test, outcome in theirs.items() if outcome == "passed"]
    lost = [test for test in passing if ours.get(test) != "passed"]
    print(f"{'test':<100} diffusers  vidgen")
    for test in lost:
        print(f"{test:<100} passed     {ours.get(test, 'missing')}")
    print(
        f"{len(passing)} pass with diffusers' transformers; {len(passing) - len(lost)} of them with vidgen's"
    )
    return 1 if lost else 0


if os.environ.get(SWAP) and __name__ != "__main__":  # loaded by pytest as the second run's plugin
    swap_in_vidgen()

if __name__ == "__main__":
    sys.exit(main())

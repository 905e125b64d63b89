"""`--offload auto` on the CPU says what it chose, as it does on a GPU, and the sidecar records it."""

import json

from vidgen.runtime.memory import auto


def test_auto_offload_on_the_cpu_notes_its_plan_and_the_sidecar_records_it(vidgen, workdir):
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "--seed", "1",
                 "--offload", "auto", "--device", "cpu", "-o", "out.mp4")  # fmt: skip
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert f"note: {auto.CPU_PLAN}" in run.stderr_lines, run.stderr
    runtime = json.loads((workdir / "out.mp4.json").read_text())["runtime"]
    assert (runtime["offload"], runtime["plan"]) == ("none", auto.CPU_PLAN)


def test_an_offload_the_user_chose_on_the_cpu_has_no_plan_note(vidgen, workdir):
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "--seed", "1",
                 "--offload", "none", "--device", "cpu", "-o", "out.mp4")  # fmt: skip
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert not any(auto.CPU_PLAN in line for line in run.stderr_lines), run.stderr

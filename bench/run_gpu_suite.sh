#!/usr/bin/env bash
# bench/gpu_suite.py on a lent GPU (issues 11 and 12): one device call of under 10 minutes.
#
# 1. Here, in the repo root of the checkout the device tool sends (a helper's worktree does not
#    travel), fetch the wheels the GPU machine lacks (its python3 is 3.12 with torch 2.11, triton,
#    transformers, accelerate, peft; no network there):
#        bash bench/run_gpu_suite.sh download
#    diffusers 0.42.1 (+ importlib_metadata, its one missing need), torchao 0.18.0 (the release built
#    for torch 2.11; --quantize fp8), imageio-ffmpeg 0.6.0: about 39 MB in .whl/, git-ignored.
# 2. One device `run`, with carry [".whl"] and timeout_s 600:
#        bash bench/run_gpu_suite.sh gpu
#    (extra arguments go to the suite, e.g. `gpu --only cogvideox-5b --skip-memory` for a rerun, or
#    `gpu --family wan` for the Wan rows alone: everything does not fit one call).
#    Without this script on the machine, the same as one command line:
#        set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir
#        --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
#        nvidia-smi | tee $OUT/nvidia-smi.txt; PYTHONUNBUFFERED=1 timeout 570 python3
#        bench/gpu_suite.py --json $OUT/suite.json 2>&1 | tee $OUT/suite.log
#    $OUT/suite.log (rows as they finish, the tables last) and $OUT/suite.json come back.
# 3. Put the printed tables (the lines from the date line on) into bench/RESULTS.md under a heading with
#    the date and card, and the JSON beside them if wanted; say in the closing note of issues 11/12.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
download)
    exclude="$(git rev-parse --git-common-dir)/info/exclude"
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
    platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
        manylinux2014_x86_64 manylinux1_x86_64; do
        platforms+=(--platform "$p")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl diffusers==0.42.1 importlib_metadata==10.2.0 torchao==0.18.0 \
        imageio-ffmpeg==0.6.0
    ls -la .whl
    ;;
gpu)
    shift
    : "${OUT:?the device tool sets OUT}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    nvidia-smi | tee "$OUT/nvidia-smi.txt" || true
    set -o pipefail
    # The suite skips rows that would start after --budget (420 s); timeout is the last guard, and the
    # JSON is rewritten after every row, so a stopped run keeps what it measured.
    timeout 570 python3 bench/gpu_suite.py --json "$OUT/suite.json" "$@" 2>&1 | tee "$OUT/suite.log"
    ;;
*)
    echo "usage: bash bench/run_gpu_suite.sh download | gpu [suite options]" >&2
    exit 2
    ;;
esac

"""bench/wan_memory.py (the README's "which preset for which card" table) runs, and the folders it plans
from weigh what the released repos do."""

import sys
from pathlib import Path

import torch

from vidgen.runtime.memory.plan import GB
from vidgen.runtime.memory.sizes import folder_parts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import wan_memory  # noqa: E402
from released_wan import write_released  # noqa: E402


def test_wan_memory_prints_one_row_per_preset_with_the_plan_each_card_gets(capsys):
    wan_memory.main(["--presets", "wan2.1-t2v-1.3b"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    head, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert head[:3] == ["preset", "size, frames", "download"]
    assert head[-5:] == ["12 GB", "16 GB", "24 GB", "48 GB", "80 GB"]
    assert len(rows) == 1 and len(rows[0]) == len(head)
    row = dict(zip(head, rows[0], strict=True))
    assert row["preset"] == "`wan2.1-t2v-1.3b`" and row["size, frames"] == "832x480, 81"
    assert row["download"] == "28.9"  # the preset's download_bytes
    # UMT5-XXL alone is 11.4 GB: 16 GB takes each model in turn; 24 GB holds everything.
    assert (row["16 GB"], row["24 GB"], row["80 GB"]) == ("model", "none", "none")
    peaks = [float(row[offload].rstrip("*")) for offload in ("none", "model", "group", "sequential")]
    assert peaks == sorted(peaks, reverse=True) and peaks[-1] < 3  # sequential: a layer and activations
    assert 14 < float(row["host RAM"]) < 15.5  # every weight once: 11.4 + 2.8 + 0.5 GB


def test_the_ti2v_5b_folder_weighs_what_its_release_downloads(tmp_path):
    folder = write_released(tmp_path / "ti2v", "wan2.2-ti2v-5b")
    parts = folder_parts(folder, torch.float32, torch.float32)
    # The repo's index files (the preset's download_bytes): transformer 20.00 GB and the Wan 2.2 VAE
    # 2.82 GB, both float32.
    assert round(parts.transformer / GB, 2) == 20.00 and parts.transformer_blocks == 30
    assert round(parts.vae / GB, 2) == 2.82

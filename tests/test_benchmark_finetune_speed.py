"""benchmarks/finetune_speed.py at its --quick size: it runs, and both sides compute the same loss.

The benchmark compares fromzero's LoRA SFT step with transformers + peft; its numbers mean
something only if both sides train the same model on the same batches, which the loss of the
first batch (dropout off, same weights, same adapter) shows. Timings of a smoke run are not checked.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "finetune_speed.py"


def test_quick_run_measures_both_sides_on_the_same_loss(tmp_path, transformers):
    pytest.importorskip("peft")
    out = tmp_path / "finetune_speed.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--dtypes", "float32", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "losses agree" in proc.stdout and "goal >= 1.3x" in proc.stdout

    result = json.loads(out.read_text())
    assert result["quick"] and result["cpu"] and result["torch"] and result["peft"]
    sides = result["results"]["float32"]
    ours, theirs = sides["fromzero"], sides["peft"]
    # a random model's loss is near log(vocab): the check compares real losses, not zeros
    for side in (ours, theirs):
        assert abs(side["loss_check"] - math.log(result["model"]["vocab_size"])) < 1.0
        assert len(side["step_seconds"]) == result["settings"]["steps"] * result["rounds"]
        assert side["tokens_per_s"] > 0 and side["peak_rss_mb"] >= side["peak_rss_after_load_mb"] > 0
    assert abs(ours["loss_check"] - theirs["loss_check"]) < 1e-4
    verdict = result["verdicts"]["float32"]
    assert verdict["losses_agree"]
    assert verdict["speedup"] == pytest.approx(ours["tokens_per_s"] / theirs["tokens_per_s"])

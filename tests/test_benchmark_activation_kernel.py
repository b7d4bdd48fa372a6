"""benchmarks/activation_kernel.py at its --quick size: it runs, times both kernels alone and in training steps,
and writes what it measured. Timings of a smoke run are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fromzero.kernels import activations

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "activation_kernel.py"


@pytest.mark.skipif(activations.unavailable_reason() is not None, reason="no C kernels here")
def test_quick_run_times_both_kernels_alone_and_in_training_steps(tmp_path):
    out = tmp_path / "activation_kernel.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "activation_kernel_quick.json").read_text())
    assert result["machine"]["cpu"] and result["rounds"] == 2
    assert {(row["name"], row["kind"]) for row in result["alone"]} == {("nanoGPT CPU config", "gelu"),
                                                                       ("nanoGPT CPU config", "gelu_new")}
    assert all(row["ms"]["torch"] > 0 and row["ms"]["native"] > 0 for row in result["alone"])
    steps = {row["kind"]: row for row in result["training_steps"]}
    assert set(steps) == {"gelu", "gelu_new"}
    for row in steps.values():
        assert row["blocks"] == 2 and row["steps_per_block"] == 2
        assert row["ms_per_step"]["torch"] > 0 and row["ms_per_step"]["native"] > 0
        low, high = row["ratio_range"]
        assert low <= row["native_over_torch"] <= high

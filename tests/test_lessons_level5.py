"""Level 5 of the course in --quick mode: its figures are the library's, and tuning helps held-out loss."""

from __future__ import annotations

from fromzero.cli import main
from fromzero.lessons.runner import run_level


def test_level5_quick(tmp_path, capsys):
    steps = {step.info.key: step.figures for step in run_level(5, quick=True, out=tmp_path)}
    lora = steps["5.1"]
    assert lora["trainable parameters (counted)"] == lora["LoRA weights in all layers"] == 147_456
    assert lora["share trained"] == "0.18%"
    assert steps["5.3"]["of them trained (answer + end)"] < steps["5.3"]["tokens in the first example"]
    assert steps["5.4"]["held-out answer loss, tuned"] < steps["5.4"]["held-out answer loss, base"]
    assert steps["5.5"]["held-out pairs: preference accuracy"].endswith("%")
    assert (tmp_path / "quick" / "level5" / "step5_5" / "adapter_model.safetensors").is_file()


def test_lora_rank_exercise(tmp_path, capsys):
    right = tmp_path / "right.py"
    right.write_text("def lora_parameters(d_in, d_out, r, layers):\n    return layers * r * (d_in + d_out)\n")
    assert main(["learn", "check", "5.lora_rank", str(right)]) == 0
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def lora_parameters(d_in, d_out, r, layers):\n    return r * d_in * d_out\n")
    assert main(["learn", "check", "5.lora_rank", str(wrong)]) == 1

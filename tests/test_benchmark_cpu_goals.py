"""benchmarks/cpu_goals.py judges issue 17's goals from results files: each threshold, and what it must not judge.

The results here are written by the test (the shapes the benchmarks write, with chosen numbers), so
every verdict is known in advance: a goal just met, one just missed, side conditions (the same
tokens, the same loss curve) that fail a fast result, and files it must refuse to judge (missing,
a --quick run, results from two machines).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_goals.py"
MACHINE = dict(cpu="Test CPU", flags=["avx2"], cores=2, torch="2.13.0", fingerprint="aaaa")


def curve(final: float) -> dict[str, float]:
    return {"1000": final + 0.2, "2000": final}


def write(folder: Path, name: str, record: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"date": "2026-12-07 10:00 UTC", "machine": MACHINE, **record}))


def training(folder: Path, ratio: float = 1.3, final: float = 1.90, recipe_s: float | None = 50.0,
             floor: dict | None = None) -> None:
    runs = {"nanogpt": dict(curve=curve(1.90), wall_s=100.0, precision="float32"),
            "fromzero-default": dict(curve=curve(final), wall_s=70.0, precision="bfloat16"),
            "fromzero-recipe": dict(curve=curve(1.89), wall_s=60.0, time_to_target_s=recipe_s, precision="bfloat16")}
    write(folder, "train_vs_nanogpt", dict(runs=runs, pairs_median_ratio=ratio, kernel_floor=floor or {},
                                           matmul_peak_gflops={"float32": 200.0, "bfloat16": 400.0}))
    for load in ("busy", "torch"):
        write(folder, f"train_vs_nanogpt_{load}", dict(background_load=load, pairs_median_ratio=2.0))


def llamacpp(folder: Path, ratios=(0.95, 1.0, 1.0), same_fp32: bool = True) -> None:
    rows = [dict(precision=p, ratio=r, fromzero_tok_s=50.0 * r, llama_cpp_tok_s=50.0,
                 fromzero_same_tokens_as_transformers=same_fp32 or p != "f32")
            for p, r in zip(("f32", "bf16", "q8_0"), ratios)]
    write(folder, "llamacpp_compare", dict(results=rows, read_bandwidth_gb_s=30.0))


def decoding(folder: Path, speedup: float = 3.0, share: float = 0.7, same: bool = True) -> None:
    rows = [dict(load=load, batch=batch, beams=1, speedup_fastest=1.5 if load == "none" else speedup,
                 fromzero_fastest_tok_s=30.0, transformers_tok_s=10.0, same_tokens=same, bound_fraction=share,
                 read_bandwidth_gb_s=15.0, free_cores=1)
            for load in ("none", "busy", "torch") for batch in (1, 8)]
    write(folder, "generation_speed", dict(results=rows))


def judge(folder: Path) -> dict:
    out = folder / "judged.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(folder), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def verdicts(result: dict) -> dict[str, bool | None]:
    return {goal["goal"]: goal["met"] for goal in result["goals"]}


def test_every_goal_met_exactly_at_its_threshold(tmp_path):
    training(tmp_path), llamacpp(tmp_path), decoding(tmp_path)
    result = judge(tmp_path)
    assert len(result["goals"]) == 14 and result["met"] == result["judged"] == 14, verdicts(result)
    assert not result["mixed_machines"]
    machine = result["machines"]["aaaa"]
    assert machine["read_bandwidth_gb_s"] == 30.0 and machine["matmul_peak_gflops"]["bfloat16"] == 400.0


def test_a_goal_just_missed_or_a_failed_side_condition_is_not_met(tmp_path):
    training(tmp_path, ratio=1.19, recipe_s=71.0)
    llamacpp(tmp_path, ratios=(1.2, 0.99, 1.5), same_fp32=False)  # fast, but not transformers' tokens
    decoding(tmp_path, speedup=2.99, share=0.69)
    result = verdicts(judge(tmp_path))
    assert result["pretraining vs nanoGPT, default flags"] is False
    assert result["pretraining recipe to nanoGPT's final loss"] is False
    assert result["batch 1, fp32 vs llama.cpp f32"] is False
    assert result["batch 1, bf16 vs llama.cpp bf16"] is False
    assert result["batch 1, int8 vs llama.cpp q8_0"] is True
    assert result["batch 1, fp32 vs transformers, one core busy"] is False
    assert result["batch 1, share of the 1-thread bound, a 2-thread torch job"] is False
    assert result["pretraining vs nanoGPT, one core busy"] is True


def test_fast_training_on_another_loss_curve_or_other_tokens_is_not_met(tmp_path):
    training(tmp_path, ratio=2.0, final=1.93)  # 0.03 worse than nanoGPT's final whole-val loss
    decoding(tmp_path, speedup=5.0, same=False)
    result = verdicts(judge(tmp_path))
    assert result["pretraining vs nanoGPT, default flags"] is False
    assert result["batch 8, fp32 vs transformers, one core busy"] is False


def test_missing_quick_and_mixed_machine_results_are_not_judged_as_met(tmp_path):
    training(tmp_path)
    write(tmp_path, "llamacpp_compare", dict(quick=True, results=[]))  # a smoke run proves nothing
    decoding(tmp_path)
    record = json.loads((tmp_path / "generation_speed.json").read_text())
    record["machine"] = dict(MACHINE, cpu="Other CPU", fingerprint="bbbb")
    (tmp_path / "generation_speed.json").write_text(json.dumps(record))
    (tmp_path / "train_vs_nanogpt_torch.json").unlink()
    result = judge(tmp_path)
    met = verdicts(result)
    assert met["batch 1, fp32 vs llama.cpp f32"] is None and met["pretraining vs nanoGPT, a 2-thread torch job"] is None
    assert result["mixed_machines"] and set(result["machines"]) == {"aaaa", "bbbb"}
    sources = {goal["goal"]: goal["source"] for goal in result["goals"]}
    assert "--quick" in sources["batch 1, bf16 vs llama.cpp bf16"]
    assert "not recorded" in sources["pretraining vs nanoGPT, a 2-thread torch job"]


def test_run_refuses_another_results_folder_and_a_wrong_nanogpt_dir(tmp_path):
    for flags, message in ((["--run", "--results", str(tmp_path)], "leave --results out"),
                           (["--nanogpt-dir", str(tmp_path)], "has no train.py")):
        done = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 2 and message in done.stderr


def test_the_pretraining_row_gives_the_ceiling_its_kernels_set(tmp_path):
    training(tmp_path, ratio=1.04, floor=dict(ms=30.0, nanogpt_ms=34.5, ceiling_ratio=1.15))
    llamacpp(tmp_path), decoding(tmp_path)
    row = next(goal for goal in judge(tmp_path)["goals"] if goal["goal"] == "pretraining vs nanoGPT, default flags")
    assert row["met"] is False and "alone would be 1.15x" in row["measured"], row


def test_kernel_floor_replays_exactly_the_kernels_of_a_step():
    """Two bias-free layers, fp32: forward 2 products; backward the 2 weight gradients and 1 input gradient."""
    import torch

    sys.path.insert(0, str(SCRIPT.parent))
    from train_vs_nanogpt import kernel_floor

    model = torch.nn.Sequential(torch.nn.Linear(16, 32, bias=False), torch.nn.Linear(32, 8, bias=False))
    x = torch.randn(4, 16)
    q = torch.randn(1, 2, 8, 4, requires_grad=True)

    def step():
        model(x).sum().backward()
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()

    floor = kernel_floor(step, repeats=3)
    assert floor["calls"] == {"matrix products": 5, "attention": 2}, floor
    assert floor["ms"] == sum(floor["ms_by_kind"].values()) > 0

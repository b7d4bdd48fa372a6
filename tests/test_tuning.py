"""Choices made by measurement (fromzero.tuning), the free-core thread follower (fromzero.machine), and
``fromzero doctor``: every choice gives the reference's tokens, a forced choice is honoured, decisions
are cached per machine fingerprint and measured again when the CPU or torch changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from fromzero import machine, tuning
from fromzero.cli import main
from fromzero.errors import InputError
from fromzero.generation import GenerationConfig, generate
from fromzero.generation import fused_step
from fromzero.generation.inference_layers import TransposedLinear
from fromzero.generation.quantize import FP32_KERNELS, kernel_names, linear_kernel, quantize
from fromzero.models import GPT
from fromzero.nn import Block

KERNELS = kernel_names("fp32")
TWO_CORES = pytest.mark.skipif(machine.usable_cores() < 2, reason="needs 2 usable cores")


@pytest.fixture
def measured(monkeypatch):
    """Let the kernels be measured (conftest pins them for every other test)."""
    for variable in ("FROMZERO_LINEAR_KERNEL", "FROMZERO_BF16_KERNEL", "FROMZERO_INT8_KERNEL"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, transformers):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=300, n_positions=64,
                                     bos_token_id=None, eos_token_id=None)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- results do not depend on the choice

@TWO_CORES
def test_matrix_products_are_bit_identical_at_any_thread_count():
    torch.manual_seed(0)
    before = torch.get_num_threads()
    try:
        for rows, inputs, outputs in [(1, 768, 2304), (8, 768, 3072), (300, 192, 576)]:
            x, w = torch.randn(rows, inputs), torch.randn(outputs, inputs)
            layers = [torch.nn.Linear(inputs, outputs, bias=False)]
            layers[0].weight.data = w
            layers += [kernel(layers[0]) for kernel in (FP32_KERNELS[k] for k in KERNELS) if kernel]
            results = {}
            for count in (1, 2):
                torch.set_num_threads(count)
                with torch.inference_mode():
                    results[count] = [layer(x) for layer in layers]
            assert all(torch.equal(a, b) for a, b in zip(results[1], results[2]))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_fp32_layout_gives_the_reference_tokens_and_logits(kernel, hf_folder, transformers, monkeypatch):
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", kernel)
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_folder).eval()
    model = quantize(GPT.from_pretrained(hf_folder), "fp32")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"gemv": "GemvLinear", "packed": "PackedLinear", "transposed": "TransposedLinear", "plain": "Linear"}[kernel] in kinds
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)
        expected = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                                      pad_token_id=0)
    assert torch.equal(generate(model, ids, GenerationConfig(max_new_tokens=20)), expected)


def test_transposed_layer_equals_linear_with_bias_and_batches():
    linear = torch.nn.Linear(16, 24)
    layer = TransposedLinear(linear)
    x = torch.randn(3, 5, 16)
    with torch.inference_mode():
        assert torch.allclose(layer(x), F.linear(x, linear.weight, linear.bias), atol=1e-6)


# ---------------------------------------------------------------- measured once, cached, forced

def test_a_choice_is_measured_once_then_read_back(measured):
    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        time.sleep(0.002)

    assert tuning.choose("demo", "k", {"slow": slow, "fast": fast}, rounds=3) == "fast"
    assert calls == {"fast": 4, "slow": 4}  # one warm-up and three timed rounds each
    assert tuning.choose("demo", "k", {"slow": slow, "fast": fast}) == "fast"
    assert calls == {"fast": 4, "slow": 4}  # read back, not measured
    decision = tuning.read_decisions()[machine.fingerprint()]["demo"]["k"]
    assert decision["chosen"] == "fast" and decision["median_seconds"]["slow"] > decision["median_seconds"]["fast"]


def test_a_new_candidate_is_measured_against_the_recorded_ones(measured):
    assert tuning.choose("demo", "k", {"a": lambda: None, "b": lambda: time.sleep(0.002)}, rounds=1) == "a"
    assert tuning.choose("demo", "k", {"a": lambda: time.sleep(0.002), "b": lambda: None, "c": lambda: None},
                         rounds=1) in ("b", "c")  # not "a" read back: a fromzero with a new kernel measures again
    assert set(tuning.read_decisions()[machine.fingerprint()]["demo"]["k"]["median_seconds"]) == {"a", "b", "c"}


def test_a_new_cpu_or_torch_measures_again(measured, monkeypatch):
    counted = []
    candidates = {"a": lambda: counted.append("a"), "b": lambda: counted.append("b")}
    tuning.choose("demo", "k", candidates, rounds=1)
    assert len(counted) == 4
    monkeypatch.setattr(torch, "__version__", "9.9.9")  # a torch upgrade: a new fingerprint
    tuning.choose("demo", "k", candidates, rounds=1)
    assert len(counted) == 8
    monkeypatch.setattr(machine, "cpu_model", lambda: "Some Other CPU")
    tuning.choose("demo", "k", candidates, rounds=1)
    assert len(counted) == 12
    # a virtual machine names two hosts alike ("AMD EPYC"): the CPU's generation tells them apart
    fields = dict(machine._cpuinfo_fields(), **{"cpu family": "99", "model": "1", "stepping": "0"})
    monkeypatch.setattr(machine, "_cpuinfo_fields", lambda: fields)
    tuning.choose("demo", "k", candidates, rounds=1)
    assert len(counted) == 16
    assert len(tuning.read_decisions()) == 4  # one entry per fingerprint


@pytest.mark.parametrize("cpuinfo, generation", [
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
     "stepping\t: 1\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\n",
     "family 26 model 2 stepping 1"),
    ("processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\n",
     "implementer 0x41 part 0xd0c variant 0x3"),
    ("", ""),
])
def test_the_cpu_generation_is_read_from_cpuinfo(cpuinfo, generation, monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    real_path = machine.Path
    monkeypatch.setattr(machine, "Path", lambda name: fake if name == "/proc/cpuinfo" else real_path(name))
    machine._cpuinfo_fields.cache_clear()
    try:
        assert machine.cpu_generation() == generation
        assert machine.describe()["generation"] == generation
    finally:
        monkeypatch.undo()
        machine._cpuinfo_fields.cache_clear()


def test_a_forced_choice_is_honoured_and_a_wrong_one_refused(monkeypatch):
    monkeypatch.setenv("FROMZERO_DEMO", "b")
    assert tuning.choose("demo", "k", {"a": lambda: None, "b": lambda: None}) == "b"
    assert not tuning.decisions_path().exists()  # nothing measured
    monkeypatch.setenv("FROMZERO_DEMO", "c")
    with pytest.raises(InputError, match="FROMZERO_DEMO='c' is not one of a, b"):
        tuning.choose("demo", "k", {"a": lambda: None, "b": lambda: None})


def test_a_corrupt_decisions_file_is_measured_over(measured):
    tuning.decisions_path().parent.mkdir(parents=True, exist_ok=True)
    tuning.decisions_path().write_text("{not json")
    assert tuning.choose("demo", "k", {"a": lambda: None, "b": lambda: time.sleep(0.002)}, rounds=1) == "a"
    assert json.loads(tuning.decisions_path().read_text())[machine.fingerprint()]["demo"]["k"]["chosen"] == "a"


def test_the_fp32_layout_is_measured_on_the_models_shapes(measured, hf_folder):
    model = GPT.from_pretrained(hf_folder)
    chosen = linear_kernel(model, rows=4)
    assert chosen in KERNELS
    (key, decision), = tuning.read_decisions()[machine.fingerprint()]["linear_kernel"].items()
    assert key.startswith("rows=4 threads=") and "(64, 192)" in key and "(64, 300)" in key
    assert decision["chosen"] == chosen and set(decision["median_seconds"]) == set(KERNELS)
    quantize(model, "fp32", rows=4)  # reads the decision back
    assert len(tuning.read_decisions()[machine.fingerprint()]["linear_kernel"]) == 1


@pytest.mark.skipif(fused_step.unavailable_reason() is not None, reason=f"no fused step here: {fused_step.unavailable_reason()}")
@pytest.mark.parametrize("mode", ["fp32", "bf16", "int8"])
def test_a_gpt_is_measured_as_it_decodes_whole_steps(mode, measured, hf_folder, monkeypatch):
    """gemv is timed through the fused step (what decoding will run), the others as eager blocks."""
    fused_calls, eager_calls = [], []
    real_step, real_forward = fused_step.blocks_step, Block.forward
    monkeypatch.setattr(fused_step, "blocks_step", lambda *a, **k: fused_calls.append(1) or real_step(*a, **k))
    monkeypatch.setattr(Block, "forward", lambda self, *a, **k: eager_calls.append(1) or real_forward(self, *a, **k))
    from fromzero.finetune.lora import LoRAConfig, add_adapter

    model = GPT.from_pretrained(hf_folder)
    if mode == "int8":  # a chat's model: adapters loaded, then converted; they are part of its steps
        add_adapter(model, config=LoRAConfig(r=16))
    linear_kernel(model, mode, rows=2)
    choice = {"fp32": "linear_kernel", "bf16": "bf16_kernel", "int8": "int8_kernel"}[mode]
    (key, decision), = tuning.read_decisions()[machine.fingerprint()][choice].items()
    assert key.startswith("rows=2 threads=") and " step blocks=2/2 " in key
    assert set(decision["median_seconds"]) == set(kernel_names(mode, {16, 64, 256}))
    assert len(fused_calls) == 1 and len(eager_calls) > 0  # gemv built its step once; the others ran blocks


def test_other_models_are_measured_layer_by_layer(measured, hf_folder):
    stack = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
    assert linear_kernel(stack, rows=3) in KERNELS
    hooked = GPT.from_pretrained(hf_folder)
    hooked.transformer.h[0].register_forward_hook(lambda *args: None)  # its steps cannot be fused: layer by layer
    linear_kernel(hooked, rows=3)
    keys = list(tuning.read_decisions()[machine.fingerprint()]["linear_kernel"])
    assert len(keys) == 2 and all(k.startswith("rows=3 threads=") and " layers=" in k for k in keys)


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_the_bf16_and_int8_kernels_are_measured_too_and_stay_close(mode, measured, hf_folder):
    reference = GPT.from_pretrained(hf_folder).eval()
    light = quantize(GPT.from_pretrained(hf_folder), mode)
    choice = {"bf16": "bf16_kernel", "int8": "int8_kernel"}[mode]
    (key, decision), = tuning.read_decisions()[machine.fingerprint()][choice].items()
    assert decision["chosen"] in kernel_names(mode, {64, 256}) and set(decision["median_seconds"]) == set(kernel_names(mode, {64, 256}))
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        exact = reference(ids).logits.log_softmax(-1)
        approx = light(ids).logits.float().log_softmax(-1)
    assert float((exact.exp() * (exact - approx)).sum(-1).mean()) < 0.01


def test_torch_int8_kernel_is_only_offered_for_widths_it_can_take():
    assert "torch" in kernel_names("int8", {64, 3072}) or not hasattr(torch, "_weight_int8pack_mm")
    from fromzero.kernels.gemv import available

    if available():
        assert "torch" not in kernel_names("int8", {64, 40})  # torch 2.13's kernel crashes on a width of 40
    else:
        with pytest.raises(InputError, match="multiples of 16"):
            kernel_names("int8", {64, 40})


# ---------------------------------------------------------------- threads follow the free cores

@TWO_CORES
@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="per-core accounting is read from Linux's /proc/stat")
def test_a_busy_core_is_seen_as_taken():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        watch = machine.CoreWatch()
        time.sleep(0.5)
        assert watch.free() <= machine.usable_cores() - 1
    finally:
        busy.kill()
        busy.wait()


def test_following_sets_then_restores_and_leaves_a_users_count(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("FROMZERO_THREADS", "1")
    with machine.threads.following() as count:
        assert count == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("FROMZERO_THREADS", "many")
    with pytest.raises(InputError, match="FROMZERO_THREADS"), machine.threads.following():
        pass
    monkeypatch.delenv("FROMZERO_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if machine.threads.initial > 1:
        torch.set_num_threads(machine.threads.initial - 1)  # the user's own count
        try:
            with machine.threads.following() as count:
                assert count == machine.threads.initial - 1
        finally:
            torch.set_num_threads(before)
    with machine.threads.following("cuda") as count:  # a GPU model: the CPU threads are not its business
        assert count == torch.get_num_threads()


@pytest.mark.skipif(machine.threads.initial < 2, reason="needs torch to start with 2 or more threads")
@pytest.mark.parametrize("fixed", [False, True])
def test_training_follows_the_free_cores_unless_its_count_is_fixed(monkeypatch, fixed):
    """A CPU training run takes the follower's count at every step (here: one core free) and puts the old
    count back at the end; ``--threads`` (config.threads) fixes the count instead."""
    import numpy as np

    from fromzero.models import GPTConfig
    from fromzero.training.config import TrainConfig
    from fromzero.training.trainer import Trainer

    monkeypatch.delenv("FROMZERO_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    free = iter([2, 2, 1, 1, 1, 1, 1])  # on entry, before step 1, then a core is taken
    monkeypatch.setattr(machine.threads, "_measure", lambda: next(free))
    tokens = np.random.default_rng(0).integers(0, 64, 4000).astype(np.uint16)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))
    config = TrainConfig(block_size=16, batch_size=4, max_steps=4, eval_interval=100, device="cpu",
                         threads=machine.threads.initial if fixed else None)
    trainer = Trainer(model, config, tokens, tokens, quiet=True)
    seen, update = [], trainer.optimizer.step  # the count each step's update runs on
    monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: (seen.append(torch.get_num_threads()), update(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(machine.threads.initial)  # torch's own count (an earlier test may have set another)
    try:
        trainer.fit()
        assert seen == ([machine.threads.initial] * 4 if fixed else [2, 1, 1, 1])
        assert torch.get_num_threads() == machine.threads.initial
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- fromzero doctor

def test_doctor_reports_the_machine_and_the_decisions(measured, hf_folder, capsys):
    linear_kernel(GPT.from_pretrained(hf_folder))
    assert main(["doctor", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["machine"]["fingerprint"] == machine.fingerprint()
    assert 1 <= report["free_cores"] <= machine.usable_cores()
    native = report["native_kernel"]  # fromzero's gemv: compiled here (with its vector instructions) or why not
    assert (native["isa"] is not None) == native["available"] == (native["reason"] is None)
    fused = report["fused_step"]  # the whole decoding step in C: on wherever the kernel is, or why not
    assert fused["available"] == (fused["reason"] is None) and (native["available"] or not fused["available"])
    assert list(report["decisions"]) == ["linear_kernel"]
    assert main(["doctor", "--quick", "--forget"]) == 0
    out = capsys.readouterr().out
    assert "no decisions measured on this machine yet" in out and not tuning.decisions_path().exists()
    assert "fused decoding step" in out
    assert main(["doctor", "--quick", "--window", "0"]) == 2  # a one-line error


@pytest.mark.parametrize("cores", [1, 2])
def test_doctor_measures_bandwidth_on_one_thread_and_on_all(cores, measured, monkeypatch, capsys):
    monkeypatch.setattr(machine.threads, "initial", cores)
    monkeypatch.setattr(machine, "read_bandwidth", lambda threads: 10.0 * threads)
    assert main(["doctor", "--json", "--window", "0.05"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["read_gb_s"] == ({"1 thread": 10.0} if cores == 1 else {"1 thread": 10.0, "2 threads": 20.0})
    assert report["matmul_peak_gflop_s"]["fp32"] > 0 and report["matmul_peak_gflop_s"]["bf16"] > 0


# ---------------------------------------------------------------- training precision

def test_auto_training_precision_is_measured_and_leaves_the_run_untouched(measured, monkeypatch, tmp_path):
    """--dtype auto on a bf16 CPU times a step both ways; the run then trains exactly as with that dtype forced."""
    import numpy as np

    from fromzero.models import GPTConfig
    from fromzero.training.config import TrainConfig
    from fromzero.machine import cpu_has_fast_bf16
    from fromzero.training.trainer import Trainer

    if not cpu_has_fast_bf16():
        pytest.skip("this CPU has no native bf16: auto is fp32 without measuring")
    monkeypatch.delenv("FROMZERO_TRAIN_DTYPE")
    tokens = np.random.default_rng(0).integers(0, 64, 4000).astype(np.uint16)

    def run(dtype: str) -> tuple[str, list[float]]:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32))
        config = TrainConfig(dtype=dtype, block_size=16, batch_size=4, max_steps=3, eval_interval=100, device="cpu")
        trainer = Trainer(model, config, tokens, tokens, quiet=True)
        chosen = "float32" if trainer.precision.dtype is None else "bfloat16"
        assert trainer.config.dtype == chosen  # what checkpoints keep: a resumed run trains the same way
        return chosen, [trainer.train_step(step).item() for step in range(3)]

    chosen, losses = run("auto")
    (key, decision), = tuning.read_decisions()[machine.fingerprint()]["train_dtype"].items()
    assert decision["chosen"] == chosen and set(decision["median_seconds"]) == {"bfloat16", "float32"}
    assert "batch=(4x16,4x16)" in key
    assert run(chosen) == (chosen, losses)  # the measuring steps left no trace: same losses as the forced dtype

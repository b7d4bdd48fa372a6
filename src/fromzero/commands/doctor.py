"""``fromzero doctor``: this machine as fromzero sees it, its measured speeds, and the choices made for it."""

from __future__ import annotations

import argparse
import json
from argparse import Namespace

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout

DESCRIPTION = """\
What runs fast differs from CPU to CPU, so fromzero measures instead of guessing:

  machine     the CPU, its generation (family/model/stepping), its vector extensions (AVX2, AVX-512,
              AMX...), the cores this process may use, torch, and the fingerprint the decisions are kept
              under (a new CPU or torch: new one)
  right now   the cores other programs leave free (measured over --window seconds) and so the
              threads decoding and training will use; FROMZERO_THREADS=N fixes the count
  speeds      memory read bandwidth on one thread and on all (decoding at batch 1 reads every weight
              per token: bandwidth / weight bytes bounds its tokens/s) and the matrix-multiply peak
              in fp32 and bf16 (what training's MFU is measured against); skipped with --quick
  kernels     fromzero's own matrix-vector kernel (C, compiled for this CPU at first use with $CC or cc),
              the vector instructions it uses, or why it cannot be used (FROMZERO_NATIVE=0 turns it off);
              and the fused decoding step built on it, which runs a whole GPT step in one call to C
              wherever the gemv kernel was chosen (FROMZERO_FUSED_STEP=0 turns it off), and the activation
              kernel that a CPU training step may use for GELU in place of torch's
  decisions   the choices measured on this machine and kept in $FROMZERO_HOME/tuning.json, with each
              candidate's time: linear_kernel, bf16_kernel and int8_kernel, the kernel that decodes
              fastest with fp32, bf16 and int8 weights; FROMZERO_LINEAR_KERNEL=gemv|packed|transposed|plain,
              FROMZERO_BF16_KERNEL=gemv|packed and FROMZERO_INT8_KERNEL=gemv|torch force one;
              train_dtype, whether training with --dtype auto multiplies in bf16 or fp32
              (FROMZERO_TRAIN_DTYPE=bfloat16|float32); attention_precision, whether the attention of a
              bf16 training step on the CPU runs in bf16 or fp32 (FROMZERO_ATTENTION_PRECISION=
              autocast|float32); activation_kernel, whether an fp32 training step on the CPU computes
              GELU with torch's kernel or fromzero's (FROMZERO_ACTIVATION_KERNEL=torch|native);
              --forget measures again

Examples:
  fromzero doctor
  fromzero doctor --quick --json
  fromzero doctor --forget
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    doctor = subparsers.add_parser("doctor", help="the machine, its free cores and speeds, and the kernel choices "
                                   "measured for it", description=DESCRIPTION, formatter_class=HelpFormatter)
    doctor.add_argument("--quick", action="store_true", help="skip the speed measurements (a few seconds)")
    doctor.add_argument("--window", type=float, default=0.3, metavar="S",
                        help="seconds over which the free cores are measured")
    doctor.add_argument("--forget", action="store_true", help="drop the decisions kept for every machine, then report")
    doctor.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    doctor.set_defaults(func=run)


def run(args: Namespace) -> int:
    import torch
    from rich.table import Table

    from fromzero import machine, tuning
    from fromzero.errors import InputError
    from fromzero.generation.inference_layers import onednn_packing_works
    from fromzero.generation.fused_step import unavailable_reason as fused_step_reason
    from fromzero.kernels import activations, gemv
    from fromzero.training.metrics import measure_cpu_peak
    from fromzero.machine import cpu_has_fast_bf16

    if args.window <= 0:
        raise InputError(f"--window must be > 0 seconds, got {args.window}")
    forgotten = tuning.forget() if args.forget else None
    reason = gemv.unavailable_reason()
    report = dict(machine=machine.describe(), onednn_packing=onednn_packing_works(torch.float32),
                  native_kernel=dict(available=reason is None, isa=None if reason else gemv.isa(), reason=reason),
                  fused_step=dict(available=(step := fused_step_reason()) is None, reason=step),
                  activation_kernel=dict(available=(why := activations.unavailable_reason()) is None, reason=why),
                  native_bf16=cpu_has_fast_bf16(), torch_threads=machine.threads.initial,
                  free_cores=machine.free_cores(args.window))
    if not args.quick:
        with console.status("measuring memory bandwidth and matrix-multiply peaks"):
            report["read_gb_s"] = {"1 thread": machine.read_bandwidth(1)}
            if machine.threads.initial > 1:
                report["read_gb_s"][f"{machine.threads.initial} threads"] = machine.read_bandwidth(machine.threads.initial)
            report["matmul_peak_gflop_s"] = {"fp32": measure_cpu_peak() / 1e9,
                                             "bf16": measure_cpu_peak(dtype=torch.bfloat16) / 1e9}
    mine = tuning.read_decisions().get(machine.fingerprint(), {})
    report["decisions"] = {choice: keys for choice, keys in mine.items() if choice != "machine"}
    report["decisions_file"] = str(tuning.decisions_path())
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0

    about = report["machine"]
    table = Table(title="this machine", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("CPU", f"{about['cpu']} ({', '.join(about['flags']) or 'no flags known'})")
    if about["generation"]:
        table.add_row("generation", about["generation"])
    table.add_row("cores", f"{about['cores']} usable, {report['free_cores']} free right now "
                           f"(decoding threads: {min(report['free_cores'], report['torch_threads'])})")
    table.add_row("torch", f"{about['torch']}; oneDNN packing {'yes' if report['onednn_packing'] else 'no'}, "
                           f"native bf16 {'yes' if report['native_bf16'] else 'no'}")
    native = report["native_kernel"]
    table.add_row("fromzero's gemv kernel", f"compiled for this CPU ({native['isa']})" if native["available"]
                  else f"[yellow]unavailable[/]: {native['reason']}")
    fused = report["fused_step"]
    table.add_row("fused decoding step", "on wherever gemv is chosen" if fused["available"]
                  else f"[yellow]off[/]: {fused['reason']}")
    gelu = report["activation_kernel"]
    table.add_row("activation kernel", "measured against torch's GELU at a training step's first use"
                  if gelu["available"] else f"[yellow]unavailable[/]: {gelu['reason']}")
    table.add_row("fingerprint", about["fingerprint"])
    for name, value in report.get("read_gb_s", {}).items():
        table.add_row(f"read bandwidth, {name}", f"{value:.1f} GB/s")
    for name, value in report.get("matmul_peak_gflop_s", {}).items():
        table.add_row(f"matmul peak, {name}", f"{value:.0f} GFLOP/s")
    stdout.print(table)

    decisions = Table(title=f"decisions measured here ({report['decisions_file']})")
    for column in ("choice", "for", "chosen", "median time per candidate"):
        decisions.add_column(column)
    for choice, keys in report["decisions"].items():
        for key, decision in keys.items():
            times = ", ".join(f"{name} {seconds * 1e3:.2f} ms" for name, seconds in decision["median_seconds"].items())
            decisions.add_row(choice, key, f"[bold green]{decision['chosen']}[/]", times)
    if report["decisions"]:
        stdout.print(decisions)
    else:
        stdout.print("no decisions measured on this machine yet: the first `fromzero generate`, `chat` or `serve` "
                     "measures its weight layout")
    if forgotten is not None:
        console.print("forgot the decisions kept before" if forgotten else "there were no decisions to forget")
    return 0

"""Is fromzero fast on *this* CPU? Issue 17's goals, judged in one table from the recorded results.

A speed claim measured on one lab machine says little about the next one: an Intel Xeon with AMX,
a laptop with AVX2 and no native bf16, an AMD EPYC. This script reads what the speed benchmarks
recorded in ``benchmarks/results/`` and checks each goal against its threshold:

- pretraining nanoGPT's CPU config with default flags: >= 1.2x nanoGPT's speed (median of the
  back-to-back pairs), at the same whole-val loss (within 0.02), and the same under a busy core and a
  2-thread torch job; the default recipe reaches nanoGPT's final whole-val loss in <= 0.7x its time
  (``train_vs_nanogpt.py``);
- batch-1 decoding of GPT-2 against llama.cpp: fp32 >= 0.95x f32, bf16 >= 1.0x bf16, int8 >= 1.0x
  q8_0, with transformers' greedy tokens (``llamacpp_compare.py``);
- batch-8 fp32 decoding >= 1.5x transformers; under each background load >= 3x transformers at
  batch 1 and 8, and >= 70% of the one-thread bandwidth bound at batch 1 (``generation_speed.py``).

It also names the machine each result came from (CPU, vector extensions, read bandwidth, matrix
product peaks): results recorded on different machines are flagged, as they cannot be judged together.

    python benchmarks/cpu_goals.py                      # judge what is recorded (seconds)
    python benchmarks/cpu_goals.py --markdown           # the same table in Markdown, for RESULTS.md
    flock /tmp/fromzero-bench.lock python benchmarks/cpu_goals.py --run --nanogpt-dir /tmp/nanoGPT
                                                        # measure everything first (31-56 minutes on 2 cores)

``--run`` runs the benchmarks one after the other with the flags RESULTS.md uses, then judges. A result
that the run did not rewrite (llama.cpp skipped because llama-cpp-python is not installed, say) is
reported as stale rather than judged. The table is written to ``results/cpu_goals.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fromzero.files import write_json
from fromzero.machine import describe
from timing import cpu_name, utc_now  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SAME_LOSS = 0.02  # whole-val loss difference still called "the same curve" (the runs' seeds differ)
LOADS = ("busy", "torch")


@dataclass
class Goal:
    """One line of the table: what is asked, what was measured, and whether it is met (None: not measured)."""
    goal: str
    needs: str
    measured: str
    met: bool | None
    source: str  # the results file and when it was recorded


@dataclass
class Recorded:
    """The results files in ``folder``; with ``since`` (a time), only those written after it count."""
    folder: Path
    since: float | None = None
    _read: dict[str, tuple[dict | None, str]] = field(default_factory=dict, repr=False)

    def read(self, name: str) -> tuple[dict | None, str]:
        """A results file and a note on where it came from; None with the reason when it cannot be judged."""
        if name not in self._read:
            self._read[name] = self._load(name)
        return self._read[name]

    def _load(self, name: str) -> tuple[dict | None, str]:
        path = self.folder / f"{name}.json"
        if not path.is_file():
            return None, f"{path.name}: not recorded"
        if self.since is not None and path.stat().st_mtime < self.since:
            return None, f"{path.name}: stale (this --run did not rewrite it)"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            return None, f"{path.name}: unreadable ({error})"
        if record.get("quick"):
            return None, f"{path.name}: a --quick smoke run"
        return record, f"{path.name}, {record.get('date', 'undated')}"


def ratio_goal(goal: str, value: float | None, threshold: float, source: str, detail: str = "",
               also: bool = True) -> Goal:
    """A goal of the form "at least ``threshold`` times the peer"; ``also`` folds in a side condition."""
    if value is None:
        return Goal(goal, f">= {threshold:g}x", "-", None, source)
    return Goal(goal, f">= {threshold:g}x", f"{value:.2f}x" + (f" ({detail})" if detail else ""),
                value >= threshold and also, source)


def pretraining_goals(recorded: Recorded) -> list[Goal]:
    record, source = recorded.read("train_vs_nanogpt")
    if record is None:
        return [ratio_goal("pretraining vs nanoGPT, default flags", None, 1.2, source),
                Goal("pretraining recipe to nanoGPT's final loss", "<= 0.70x its time", "-", None, source)]
    runs = record["runs"]
    nano, ours = runs["nanogpt"], runs["fromzero-default"]
    final = {name: run["curve"][max(run["curve"], key=int)] for name, run in (("nanogpt", nano), ("ours", ours))}
    gap = final["ours"] - final["nanogpt"]
    floor = record.get("kernel_floor") or {}  # older results have none
    ceiling = (f"; its products and attention alone would be {floor['ceiling_ratio']:.2f}x"
               if "ceiling_ratio" in floor else "")
    goals = [ratio_goal("pretraining vs nanoGPT, default flags", record.get("pairs_median_ratio"), 1.2, source,
                        f"median pair, {ours['precision']}; final whole-val {final['ours']:.4f} vs "
                        f"{final['nanogpt']:.4f}{ceiling}", also=abs(gap) <= SAME_LOSS)]
    recipe = runs.get("fromzero-recipe")
    if recipe is None or recipe.get("time_to_target_s") is None:
        goals.append(Goal("pretraining recipe to nanoGPT's final loss", "<= 0.70x its time",
                          "not reached" if recipe else "-", False if recipe else None, source))
    else:
        share = recipe["time_to_target_s"] / nano["wall_s"]
        goals.append(Goal("pretraining recipe to nanoGPT's final loss", "<= 0.70x its time",
                          f"{share:.2f}x ({recipe['time_to_target_s']:.0f} s vs {nano['wall_s']:.0f} s)",
                          share <= 0.7, source))
    for kind in LOADS:
        loaded, loaded_source = recorded.read(f"train_vs_nanogpt_{kind}")
        goals.append(ratio_goal(f"pretraining vs nanoGPT, {describe_load(kind)}",
                                loaded and loaded["pairs_median_ratio"], 1.2, loaded_source,
                                "median pair" if loaded else ""))
    return goals


def llamacpp_goals(recorded: Recorded) -> list[Goal]:
    record, source = recorded.read("llamacpp_compare")
    rows = {row["precision"]: row for row in record["results"]} if record else {}
    goals = []
    for precision, ours, threshold in (("f32", "fp32", 0.95), ("bf16", "bf16", 1.0), ("q8_0", "int8", 1.0)):
        row = rows.get(precision)
        detail = row and (f"{row['fromzero_tok_s']:.1f} vs {row['llama_cpp_tok_s']:.1f} tok/s; "
                          f"{'same' if row['fromzero_same_tokens_as_transformers'] else 'OTHER'} tokens as transformers")
        same = bool(row) and (precision != "f32" or row["fromzero_same_tokens_as_transformers"])
        goals.append(ratio_goal(f"batch 1, {ours} vs llama.cpp {precision}", row and row["ratio"],
                                threshold, source, detail or "", also=same))
    return goals


def decoding_goals(recorded: Recorded) -> list[Goal]:
    record, source = recorded.read("generation_speed")
    rows = {(row["load"], row["batch"]): row for row in record["results"] if row["beams"] == 1} if record else {}

    def speedup(load: str, batch: int, threshold: float) -> Goal:
        row = rows.get((load, batch))
        detail = row and (f"{row['fromzero_fastest_tok_s']:.1f} vs {row['transformers_tok_s']:.1f} tok/s"
                          + ("" if row["same_tokens"] else "; OTHER tokens"))
        return ratio_goal(f"batch {batch}, fp32 vs transformers, {describe_load(load)}",
                          row and row["speedup_fastest"], threshold, source, detail or "",
                          also=bool(row) and row["same_tokens"])

    goals = [speedup("none", 8, 1.5)]
    for load in LOADS:
        goals += [speedup(load, 1, 3.0), speedup(load, 8, 3.0)]
        row = rows.get((load, 1))
        goals.append(Goal(f"batch 1, share of the 1-thread bound, {describe_load(load)}", ">= 70%",
                          f"{row['bound_fraction']:.0%} ({row['read_bandwidth_gb_s']:.1f} GB/s on "
                          f"{row['free_cores']} thread(s))" if row else "-",
                          row["bound_fraction"] >= 0.7 if row else None, source))
    return goals


def describe_load(kind: str) -> str:
    return {"none": "quiet machine", "busy": "one core busy", "torch": "a 2-thread torch job"}[kind]


def machines(recorded: Recorded) -> dict[str, dict]:
    """fingerprint -> the machine and the measured bandwidth and peaks, over the results judged here."""
    found: dict[str, dict] = {}
    for name in ("train_vs_nanogpt", *(f"train_vs_nanogpt_{kind}" for kind in LOADS), "llamacpp_compare",
                 "generation_speed"):
        record, _ = recorded.read(name)
        if record is None or not isinstance(record.get("machine"), dict):
            continue
        machine = found.setdefault(record["machine"]["fingerprint"], dict(record["machine"], results=[]))
        machine["results"].append(name)
        if "matmul_peak_gflops" in record:
            machine["matmul_peak_gflops"] = record["matmul_peak_gflops"]
        if "read_bandwidth_gb_s" in record:
            machine["read_bandwidth_gb_s"] = record["read_bandwidth_gb_s"]
    return found


def machine_line(machine: dict) -> str:
    parts = [cpu_name(machine), f"torch {machine['torch']}"]
    if "read_bandwidth_gb_s" in machine:
        parts.append(f"read bandwidth {machine['read_bandwidth_gb_s']:.1f} GB/s")
    if "matmul_peak_gflops" in machine:
        parts.append("matmul peaks " + ", ".join(f"{dtype} {value:.0f} GFLOP/s"
                                                 for dtype, value in machine["matmul_peak_gflops"].items()))
    return "; ".join(parts)


def run_benchmarks(nanogpt: Path | None) -> None:
    """Every benchmark the goals read, one after the other, as RESULTS.md runs them."""
    python = sys.executable
    commands = []
    if nanogpt is None:
        print("no --nanogpt-dir: the pretraining goals are not measured (a checkout of karpathy/nanoGPT is needed)",
              flush=True)
    else:
        commands.append([python, ROOT / "train_vs_nanogpt.py", "--nanogpt-dir", nanogpt, "--pairs", "5"])
        commands += [[python, ROOT / "train_vs_nanogpt.py", "--nanogpt-dir", nanogpt, "--pairs", "5",
                      "--background-load", kind] for kind in LOADS]
    commands.append([python, ROOT / "llamacpp_compare.py", "--repeats", "5"])
    commands.append([python, ROOT / "generation_speed.py", "--beams", "0", "--background-load", "none", *LOADS])
    for command in commands:
        print("$", " ".join(str(part) for part in command), flush=True)
        done = subprocess.run([str(part) for part in command], check=False)
        if done.returncode:  # the others still run; this one's goals are reported as not measured (stale)
            print(f"{Path(command[1]).name} failed (exit status {done.returncode}): its goals are not judged",
                  flush=True)


def markdown(goals: list[Goal], found: dict[str, dict]) -> str:
    lines = [f"Machine: {machine_line(machine)}" for machine in found.values()] or ["Machine: no results recorded"]
    lines += ["", "| goal | needs | measured | met | recorded |", "|---|---|---|---|---|"]
    lines += [f"| {g.goal} | {g.needs} | {g.measured} | {verdict(g.met)} | {g.source} |" for g in goals]
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "yes" if met else "**no**"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true",
                        help="run the benchmarks first (31-56 minutes on 2 cores), then judge what they recorded")
    parser.add_argument("--nanogpt-dir", type=Path,
                        help="a checkout of karpathy/nanoGPT, for the pretraining goals with --run (without it "
                             "they are not re-measured)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown, for RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the folder of results files to judge (default: benchmarks/results)")
    parser.add_argument("--out", type=Path, help="where the judged table goes (default: cpu_goals.json in --results)")
    args = parser.parse_args()
    args.out = args.out or args.results / "cpu_goals.json"
    if args.run and args.results != RESULTS:
        parser.error("--run writes to benchmarks/results: leave --results out")
    if args.nanogpt_dir is not None and not (args.nanogpt_dir / "train.py").is_file():
        parser.error(f"{args.nanogpt_dir} has no train.py: point --nanogpt-dir at a checkout of karpathy/nanoGPT")
    return args


def main() -> None:
    from rich.table import Table

    from fromzero.console import console, stdout

    args = parse_args()
    recorded = Recorded(args.results)
    if args.run:
        recorded.since = time.time()
        run_benchmarks(args.nanogpt_dir)
    goals = pretraining_goals(recorded) + llamacpp_goals(recorded) + decoding_goals(recorded)
    found = machines(recorded)
    here = describe()["fingerprint"]
    if args.markdown:
        print(markdown(goals, found))
    else:
        for fingerprint, machine in found.items():
            mark = "" if fingerprint == here else " [yellow](not this machine)[/]"
            console.print(f"[bold]machine[/] {machine_line(machine)}{mark}")
        if len(found) > 1:
            console.print("[red]these results come from different machines: re-run them on one (--run)[/]")
        table = Table(title="issue 17: fast on this CPU?")
        for column in ("goal", "needs", "measured", "met", "recorded"):
            table.add_column(column, justify="left" if column in ("goal", "measured", "recorded") else "right")
        for g in goals:
            table.add_row(g.goal, g.needs, g.measured, {True: "[green]yes[/]", False: "[red]no[/]",
                                                        None: "[dim]not measured[/]"}[g.met], g.source)
        stdout.print(table)
    write_json(args.out, dict(date=utc_now(), machines=found,
                              mixed_machines=len(found) > 1, goals=[asdict(g) for g in goals],
                              met=sum(g.met is True for g in goals), judged=sum(g.met is not None for g in goals)))
    console.print(f"{sum(g.met is True for g in goals)} of {len(goals)} goals met; wrote {args.out}")


if __name__ == "__main__":
    main()

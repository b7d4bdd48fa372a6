"""The original Transformer against the GRU encoder-decoders it replaced, and on the synthetic tasks.

Two tables:

1. **Translation** (English to Hindi, the bundled ``translation_en_hi``): the Transformer, the GRU with
   attention and the plain GRU, each trained by ``fromzero seq2seq train`` on the same pairs with the same
   tokenizer (one BPE vocabulary learned from the training pairs), the same batch size and the same
   number of steps, then scored on the held-out test split (168 pairs, never trained on) with sacrebleu's
   BLEU and chrF, with greedy decoding and with beam search (the same strategies for all three). With
   ``--seeds N`` each model is trained N times (weights, batches and dropout from another seed) and the
   table gives the mean: on 168 sentences one run's BLEU moves by about a point from seed to seed.
   Training time is wall-clock.
2. **Synthetic tasks** (copy, reverse, numbers to words): the Transformer's exact match on 500 held-out
   sequences and its training time; the goal is 99% within 2 minutes on 2 cores.

Every run goes through the library (:func:`fromzero.seq2seq.train.train_seq2seq`), one after another on
a quiet machine (the 2 cores are shared: a run under load is void).

    flock /tmp/fromzero-bench.lock python benchmarks/seq2seq_translation.py             # full run (~25 min on 2 cores)
    flock /tmp/fromzero-bench.lock python benchmarks/seq2seq_translation.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from timing import cpu_name, quick_path  # benchmarks/timing.py

from fromzero.seq2seq.config import Seq2SeqTrainConfig
from fromzero.seq2seq.tasks import load_task
from fromzero.seq2seq.train import train_seq2seq
from fromzero.seq2seq.translate import Translator

RESULTS = Path(__file__).resolve().parent / "results" / "seq2seq_translation.json"
OUT = Path("out/bench/seq2seq")
ARCHS = ("transformer", "gru-attention", "gru")
SYNTHETIC = ("copy", "reverse", "numbers")
SYNTHETIC_STEPS = [800, 1200, 800]  # as many as each needs: the loss has flattened by then
GOAL_EXACT, GOAL_SECONDS = 99.0, 120.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--translation-steps", type=int, default=2000, help="training steps of each translation model")
    parser.add_argument("--synthetic-steps", type=int, nargs=3, default=SYNTHETIC_STEPS, metavar=("COPY", "REVERSE", "NUMBERS"),
                        help="training steps of each synthetic task")
    parser.add_argument("--tokenizer", default="bpe:1000", help="the translation models' tokenizer")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--tasks", nargs="*", choices=SYNTHETIC, default=list(SYNTHETIC))
    parser.add_argument("--beams", type=int, default=4, help="beam width of the second score")
    parser.add_argument("--seeds", type=int, default=1, help="train each translation model this many times")
    parser.add_argument("--quick", action="store_true", help="a few steps of each, to check the script runs")
    return parser.parse_args()


def translation_row(arch: str, seed: int, args: argparse.Namespace) -> dict:
    steps = 20 if args.quick else args.translation_steps
    config = Seq2SeqTrainConfig(task="translate-en-hi", arch=arch, tokenizer=args.tokenizer, max_steps=steps,
                                eval_interval=max(steps // 6, 1), dropout=0.3, seed=seed,
                                out=str(OUT / f"en-hi-{arch}-seed{seed}"))
    result = train_seq2seq(config, overwrite=True, quiet=True)
    row = {"arch": arch, "seed": seed, "parameters": result.parameters, "steps": result.steps,
           "train_seconds": round(result.train_seconds, 1), "wall_seconds": round(result.wall_seconds, 1),
           "val_loss": result.val_loss,
           **{f"greedy_{k}": round(v, 2) for k, v in result.scores.items()}}
    if args.beams > 1:
        started = time.perf_counter()
        beam = Translator.load(result.out).evaluate(load_task("translate-en-hi").test, num_beams=args.beams)
        row.update({f"beam{args.beams}_{k}": round(v, 2) for k, v in beam.items()})
        row["beam_seconds"] = round(time.perf_counter() - started, 1)
    return row


def synthetic_row(task: str, args: argparse.Namespace) -> dict:
    steps = 20 if args.quick else args.synthetic_steps[SYNTHETIC.index(task)]
    config = Seq2SeqTrainConfig(task=task, n_layer=2, dropout=0.0, lr=2e-3, max_steps=steps,
                                out=str(OUT / f"{task}-transformer"))
    result = train_seq2seq(config, overwrite=True, quiet=True)
    return {"task": task, "steps": result.steps, "train_seconds": round(result.train_seconds, 1),
            "wall_seconds": round(result.wall_seconds, 1),
            "exact_match": round(result.scores["exact_match"], 2), "test_pairs": config.test_size,
            "goal_met": result.scores["exact_match"] >= GOAL_EXACT and result.wall_seconds <= GOAL_SECONDS}


def main() -> None:
    args = parse_args()
    translation = []
    for seed in range(1337, 1337 + args.seeds):
        for arch in args.archs:
            translation.append(translation_row(arch, seed, args))
            print(json.dumps(translation[-1]), flush=True)
    synthetic = []
    for task in args.tasks:
        synthetic.append(synthetic_row(task, args))
        print(json.dumps(synthetic[-1]), flush=True)

    print(f"\nEnglish -> Hindi, {len(load_task('translate-en-hi').test)} held-out pairs, {args.tokenizer}, "
          f"mean of {args.seeds} seed(s) ({cpu_name()})")
    beam = f"beam{args.beams}"
    print(f"{'model':<15}{'params':>10}{'steps':>7}{'wall s':>9}{'val loss':>10}{'BLEU':>7}{'chrF':>7}"
          f"{beam + ' BLEU':>12}{beam + ' chrF':>12}")
    for arch in args.archs:
        rows = [row for row in translation if row["arch"] == arch]
        mean = {key: statistics.mean(row.get(key, 0) for row in rows)
                for key in ("wall_seconds", "val_loss", "greedy_bleu", "greedy_chrf", f"{beam}_bleu", f"{beam}_chrf")}
        print(f"{arch:<15}{rows[0]['parameters']:>10,}{rows[0]['steps']:>7}{mean['wall_seconds']:>9.0f}"
              f"{mean['val_loss']:>10.3f}{mean['greedy_bleu']:>7.2f}{mean['greedy_chrf']:>7.2f}"
              f"{mean[f'{beam}_bleu']:>12.2f}{mean[f'{beam}_chrf']:>12.2f}")
    print(f"\nSynthetic tasks, the Transformer (goal: {GOAL_EXACT:.0f}% exact within {GOAL_SECONDS:.0f} s)")
    print(f"{'task':<10}{'steps':>7}{'wall s':>9}{'exact %':>9}  goal")
    for row in synthetic:
        print(f"{row['task']:<10}{row['steps']:>7}{row['wall_seconds']:>9.0f}{row['exact_match']:>9.1f}  "
              f"{'met' if row['goal_met'] else 'NOT met'}")

    path = quick_path(RESULTS) if args.quick else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "tokenizer": args.tokenizer,
                                "translation_steps": args.translation_steps, "seeds": args.seeds,
                                "translation": translation, "synthetic": synthetic}, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

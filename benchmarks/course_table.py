"""The course's table: every model of levels 1 to 5 in bits per byte on the same held-out stories,
and the chat models' scores on held-out questions and preference pairs.

Held-out text: the stories ``fromzero train`` holds out by default (``train_val_documents``, 10%,
seed 1337), which is what ``fromzero evaluate --suite lm`` scores. Every model is trained on the
other stories only:

- unigram (add-1), bigram and 5-gram (Kneser-Ney) over characters, and the NumPy char-MLP with
  level 2's defaults (k=6, d=32, h=512, 5 epochs): fitted here with the library on the training
  stories, over one closed vocabulary (every character of the corpus, as
  ``benchmarks/classic_perplexity.py`` does), and saved as the run folders ``fromzero ngram train``
  and ``fromzero numpy-net train`` write;
- the mini GPT: ``fromzero train`` with its defaults (level 4's model: characters, the mini preset);
- the course's base model, + SFT, + DPO: ``fromzero quickstart`` (its pretraining reads the stories
  and the education_qa training answers, each split on its own, so it holds out the same stories).

Then ``fromzero evaluate --suite lm`` over all eight, and ``fromzero evaluate`` (all suites) over the
three chat models. Runs already in ``--out`` are reused (delete them to train again). Prints both
tables and writes ``benchmarks/results/course_table.json``, with the two reports in ``--out``.

    flock /tmp/fromzero-bench.lock python benchmarks/course_table.py            # about 20 minutes
    flock /tmp/fromzero-bench.lock python benchmarks/course_table.py --quick    # smoke run, tiny runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from timing import cpu_name, quick_path  # benchmarks/timing.py

RESULTS = Path(__file__).resolve().parent / "results" / "course_table.json"
NGRAMS = [("unigram (add-1)", 1, "add-k"), ("bigram (Kneser-Ney)", 2, "kneser-ney"), ("5-gram (Kneser-Ney)", 5, "kneser-ney")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/course-table"), help="folder for the runs and reports")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything: checks the script runs")
    args = parser.parse_args()

    from fromzero.classic.char_mlp import CharMLP, CharMLPConfig, train_char_mlp
    from fromzero.classic.char_mlp import TrainConfig as MLPTrainConfig
    from fromzero.classic.corpus import char_vocab
    from fromzero.classic.ngram import NGramModel
    from fromzero.classic.runs import NGRAM_FILE, RUN_FILE, VOCAB_FILE
    from fromzero.cli import main as fromzero
    from fromzero.files import write_json
    from fromzero.data.loading import DOCUMENT_SEPARATOR, load_documents
    from fromzero.data.split import train_val_documents
    from fromzero.training.config import TrainConfig

    out = args.out / "quick" if args.quick else args.out
    out.mkdir(parents=True, exist_ok=True)
    train_docs, _ = train_val_documents(load_documents("stories"), TrainConfig.val_fraction, TrainConfig.seed)
    train_text = DOCUMENT_SEPARATOR.join(train_docs)
    vocab = char_vocab(*load_documents("stories"), DOCUMENT_SEPARATOR)
    steps = ["--max-steps", "20", "--preset", "tiny"] if args.quick else []
    folders = {"unigram (add-1)": "unigram", "bigram (Kneser-Ney)": "bigram", "5-gram (Kneser-Ney)": "5gram",
               "NumPy char-MLP": "numpy-net", "mini GPT": "mini-gpt", "course base": "quickstart/base",
               "+ SFT": "quickstart/sft", "+ DPO": "quickstart/dpo"}
    seconds: dict[str, float] = {}

    def run(name: str, argv: list[str], done: Path) -> None:
        if done.exists():
            print(f"{name}: reusing {done.parent}")
            return
        start = time.perf_counter()
        if fromzero(argv) != 0:
            sys.exit(f"{name}: `fromzero {' '.join(argv)}` failed")
        seconds[name] = time.perf_counter() - start

    for name, order, smoothing in NGRAMS:
        folder = out / folders[name]
        if not (folder / NGRAM_FILE).is_file():
            start = time.perf_counter()
            folder.mkdir(parents=True, exist_ok=True)
            NGramModel(order, smoothing, k=1.0).fit(train_text, vocab=vocab).save(folder / NGRAM_FILE)
            write_json(folder / RUN_FILE, {"data": "stories (train split)", "tokenizer": None})
            seconds[name] = time.perf_counter() - start
    folder = out / folders["NumPy char-MLP"]
    if not (folder / VOCAB_FILE).is_file():
        start = time.perf_counter()
        mlp = CharMLP(CharMLPConfig(len(vocab), hidden=32 if args.quick else 512), seed=0)
        index = {ch: i for i, ch in enumerate(vocab)}
        train_char_mlp(mlp, [index[ch] for ch in train_text], None, MLPTrainConfig(epochs=1 if args.quick else 5))
        folder.mkdir(parents=True, exist_ok=True)
        mlp.save(folder)
        write_json(folder / VOCAB_FILE, vocab)
        seconds["NumPy char-MLP"] = time.perf_counter() - start
    run("mini GPT", ["train", "--out", str(out / "mini-gpt"), *steps], out / "mini-gpt" / "model.safetensors")
    quickstart = ["--pretrain-steps", "20", "--sft-epochs", "1", "--dpo-epochs", "1"] if args.quick else []
    run("quickstart", ["quickstart", "--out", str(out / "quickstart"), *quickstart], out / "quickstart" / "dpo" / "finetune.json")

    models = [f"{name}={out / folder}" for name, folder in folders.items()]
    lm_flags = [flag for model in models for flag in ("--model", model)]
    if fromzero(["evaluate", "--suite", "lm", *lm_flags, "--out", str(out / "report-lm")]) != 0:
        return 1
    chat_flags = [flag for model in models[-3:] for flag in ("--model", model)]
    if fromzero(["evaluate", *chat_flags, "--out", str(out / "report-chat")]) != 0:
        return 1
    lm = json.loads((out / "report-lm" / "report.json").read_text())
    chat = json.loads((out / "report-chat" / "report.json").read_text())
    record = {"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "quick": args.quick, "train_seconds": seconds,
              "bits_per_byte": {name: model["lm"]["bits_per_byte"] for name, model in lm["models"].items()},
              "lm": {name: model["lm"] for name, model in lm["models"].items()},
              "chat": {name: {suite: model[suite] for suite in ("qa", "prefs")} for name, model in chat["models"].items()},
              "held_out": {**lm["data"], **chat["data"]}}
    print(f"\n{'model':<22}{'kind':<10}{'bits per byte':>14}   held-out stories, {lm['data']['lm_text_bytes']:,} bytes")
    for name, model in lm["models"].items():
        print(f"{name:<22}{model['kind']:<10}{model['lm']['bits_per_byte']:>14.3f}")
    path = quick_path(RESULTS) if args.quick else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

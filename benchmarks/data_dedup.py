"""Near-duplicate removal: fromzero's MinHash + LSH against brute force and datasketch.

Documents: the bundled stories, each followed by lightly edited copies (a few words replaced),
so the true answer is known. Every method walks the documents in order and keeps one unless it
is a near duplicate (5-character-shingle Jaccard >= 0.8) of an earlier kept document:

- ``brute force``: exact Jaccard against every kept document (the reference answer);
- ``fromzero``: :func:`fromzero.data.deduplicate` (MinHash signatures, LSH bands, exact check);
- ``datasketch``: ``MinHashLSH`` with the same threshold and 128 permutations, if installed
  (``pip install datasketch``); it trusts the LSH estimate without an exact check.

Run: flock /tmp/fromzero-bench.lock python benchmarks/data_dedup.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import random
from pathlib import Path

from rich.table import Table

from fromzero.console import console, stdout
from fromzero.data import deduplicate, load_documents
from fromzero.data.dedup import exact_key, jaccard, normalise_for_dedup, shingles
from fromzero.files import write_json
from timing import quick_path, timed  # benchmarks/timing.py

RESULTS = Path(__file__).resolve().parent / "results" / "data_dedup.json"
THRESHOLD = 0.8


def make_corpus(copies: int, edits: int, seed: int, limit: int | None) -> list[str]:
    """Each story followed by ``copies`` versions with ``edits`` words replaced."""
    rng = random.Random(seed)
    stories = load_documents("stories")[:limit]
    corpus = []
    for story in stories:
        corpus.append(story)
        for _ in range(copies):
            words = story.split(" ")
            for _ in range(edits):
                words[rng.randrange(len(words))] = rng.choice(["river", "lamp", "kite", "mango"])
            corpus.append(" ".join(words))
    return corpus


def brute_force(docs: list[str]) -> list[int]:
    kept: list[int] = []
    kept_keys: set[str] = set()
    kept_shingles: list[set[str]] = []
    for i, doc in enumerate(docs):
        key, doc_shingles = exact_key(doc), shingles(doc)
        if key in kept_keys or any(jaccard(doc_shingles, other) >= THRESHOLD for other in kept_shingles):
            continue
        kept.append(i)
        kept_keys.add(key)
        kept_shingles.append(doc_shingles)
    return kept


def with_datasketch(docs: list[str]) -> list[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    kept: list[int] = []
    for i, doc in enumerate(docs):
        minhash = MinHash(num_perm=128, seed=1)
        minhash.update_batch([s.encode("utf-8") for s in shingles(doc)])
        if lsh.query(minhash):
            continue
        lsh.insert(str(i), minhash)
        kept.append(i)
    return kept




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="edited copies of each story")
    parser.add_argument("--edits", type=int, default=5, help="words replaced in each copy")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 stories, 1 repeat")
    args = parser.parse_args(argv)
    limit, repeats = (40, 1) if args.quick else (None, args.repeats)

    docs = make_corpus(args.copies, args.edits, args.seed, limit)
    console.print(f"{len(docs)} documents, {sum(map(len, docs)):,} characters")
    methods = {"brute force": brute_force, "fromzero": lambda d: deduplicate(d, threshold=THRESHOLD).kept}
    try:
        import datasketch  # noqa: F401

        methods["datasketch"] = with_datasketch
    except ImportError:
        console.print("[yellow]datasketch is not installed; its row is left out[/]")

    reference, rows = None, []
    for name, fn in methods.items():
        kept, seconds = timed(lambda: fn(docs), repeats)
        reference = reference if reference is not None else set(kept)
        wrongly_removed = len(reference - set(kept))
        wrongly_kept = len(set(kept) - reference)
        rows.append({"method": name, "seconds": seconds, "kept": len(kept),
                     "wrongly_removed": wrongly_removed, "wrongly_kept": wrongly_kept})  # fmt: skip

    table = Table(title=f"near-duplicate removal, Jaccard >= {THRESHOLD} on 5-char shingles")
    for column in ("method", "median seconds", "kept", "wrongly removed", "wrongly kept", "speed-up vs brute force"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        speedup = rows[0]["seconds"] / row["seconds"]
        table.add_row(row["method"], f"{row['seconds']:.3f}", str(row["kept"]), str(row["wrongly_removed"]),
                      str(row["wrongly_kept"]), f"{speedup:.1f}x")  # fmt: skip
    stdout.print(table)
    results = quick_path(RESULTS) if args.quick else RESULTS
    write_json(results, {
        "documents": len(docs), "copies": args.copies, "edits": args.edits, "repeats": repeats,
        "quick": args.quick, "python": platform.python_version(), "machine": platform.machine(),
        "unique_by_text": len({normalise_for_dedup(d) for d in docs}), "rows": rows,
    })  # fmt: skip
    console.print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

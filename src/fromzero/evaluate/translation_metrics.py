"""Scores for translations against reference translations: BLEU, chrF and exact match.

* **BLEU** (Papineni et al., 2002): how many of the hypothesis' word 1- to 4-grams appear in the
  reference, times a penalty for being too short; the corpus score pools the n-gram counts of every
  sentence before dividing. The number every MT paper reports (the Transformer: 27.3 on English–German).
* **chrF** (Popović, 2015): an F-score over *character* 1- to 6-grams. It gives partial credit for
  a word with the right stem and the wrong ending, which matters for Hindi's rich morphology, and is
  more stable than BLEU on small test sets like ours.
* **exact match**: the share of hypotheses identical to their reference (after trimming spaces):
  the right score for the synthetic tasks, where there is exactly one answer.

BLEU and chrF come from ``sacrebleu`` (Post, 2018), the reference implementation, with its
default settings (13a tokenization), so the numbers compare with published ones.
"""

from __future__ import annotations

import importlib.util
from typing import Sequence

from fromzero.errors import InputError


def have_sacrebleu() -> bool:
    return importlib.util.find_spec("sacrebleu") is not None


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], *, bleu: bool = True
                       ) -> dict[str, float]:
    """``{"bleu", "chrf", "exact_match"}`` of ``hypotheses`` against one reference each (0 to 100);
    only exact match with ``bleu=False`` (which needs no sacrebleu)."""
    if len(hypotheses) != len(references) or not references:
        raise InputError(f"need one hypothesis per reference, got {len(hypotheses)} and {len(references)}")
    scores = {"exact_match": 100 * sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)) / len(references)}
    if not bleu:
        return scores
    if not have_sacrebleu():
        raise InputError("BLEU and chrF need the sacrebleu package: pip install 'fromzero[eval]'")
    import sacrebleu

    return {"bleu": sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
            "chrf": sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score, **scores}

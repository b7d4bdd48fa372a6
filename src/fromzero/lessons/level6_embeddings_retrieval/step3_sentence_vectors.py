"""Sentence vectors: one vector per sentence, from a Transformer encoder, pooled over its tokens."""

from __future__ import annotations

from fromzero.embeddings.encoders import GPTMeanPoolEncoder, load_encoder, pool
from fromzero.embeddings.plots import cosine_matrix, plot_similarity
from fromzero.lessons.course import Step

TITLE = "Sentence vectors (MiniLM and our own GPT)"
NEEDS = ("5.2",)
# Two pairs that mean the same in different words, and two that share words but not meaning.
SENTENCES = (
    "Plants make their food from sunlight.",
    "Green leaves use light to produce sugar.",
    "The river flooded the village after the rain.",
    "Heavy rain made the water rise over the houses.",
    "The bank of the river was muddy.",
    "She put her money in the bank.",
)
LABELS = ("plants 1", "plants 2", "flood 1", "flood 2", "river bank", "money bank")


def run(step: Step) -> None:
    step.say("""
        To search documents by meaning we need one vector per *sentence*. A Transformer **encoder** reads
        the whole sentence at once (no causal mask: every token sees every other) and gives a vector per
        token; **pooling** averages them into one. `all-MiniLM-L6-v2` is a small BERT (6 layers, 384
        numbers per token) trained on a billion sentence pairs so that sentences meaning the same thing
        land close together. fromzero runs it with its own WordPiece tokenizer and encoder, and gets the
        same numbers as sentence-transformers. The pooling:
    """)
    step.show(pool)
    minilm = load_encoder("minilm")
    step.figure("MiniLM: numbers per sentence", minilm.dim)
    step.figure("MiniLM: tokens of the first sentence",
                " ".join(minilm.tokenizer.tokenize(SENTENCES[0].lower() if minilm.lowercase else SENTENCES[0])))
    minilm_gap = _compare(step, "MiniLM", minilm, "6_3_minilm_similarity.png")

    step.say("""
        Now the same with the GPT we pretrained in level 5: the mean of its last hidden states. It was
        trained to predict the next token, never to compare sentences, and on far less text.
    """)
    own_gap = _compare(step, "course GPT", GPTMeanPoolEncoder.load(str(step.output("5.2"))),
                       "6_3_course_gpt_similarity.png")
    step.say(f"""
        The bigger the gap, the better a model tells meaning apart: MiniLM's is {minilm_gap}, the course GPT's
        {own_gap}. Look at the two heatmaps: a next-token predictor's mean state carries which words a text
        uses more than what it means, so sentences that share words look alike to it.
    """)


def _compare(step: Step, name: str, encoder, picture: str) -> float:
    """Encode the sentences with ``encoder``, draw their cosines, report the telling pairs; return the gap
    between same-meaning and unrelated pairs (how well the model tells meaning apart)."""
    vectors = encoder.encode(list(SENTENCES), normalize=True)
    cosines = cosine_matrix(vectors)
    step.saved(plot_similarity(vectors, LABELS, step.picture(picture), title=f"{name}: cosine similarity"))
    step.figure(f"{name}: plants 1 vs plants 2 (same meaning, other words)", round(float(cosines[0, 1]), 3))
    step.figure(f"{name}: plants 1 vs flood 1 (unrelated)", round(float(cosines[0, 2]), 3))
    step.figure(f"{name}: river bank vs money bank (same word, other meaning)", round(float(cosines[4, 5]), 3))
    same = (cosines[0, 1] + cosines[2, 3]) / 2
    unrelated = (cosines[0, 2] + cosines[0, 3] + cosines[1, 2] + cosines[1, 3]) / 4
    return step.figure(f"{name}: same-meaning minus unrelated cosine", round(float(same - unrelated), 3))

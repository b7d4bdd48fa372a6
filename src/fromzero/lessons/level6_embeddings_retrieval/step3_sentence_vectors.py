"""Sentence vectors: one vector per sentence, from a Transformer encoder, pooled over its tokens."""

from __future__ import annotations

import numpy as np

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
    vectors = minilm.encode(list(SENTENCES), normalize=True)
    cosines = cosine_matrix(vectors)
    step.saved(plot_similarity(vectors, LABELS, step.picture("6_3_minilm_similarity.png"),
                               title="all-MiniLM-L6-v2: cosine similarity"))
    step.figure("MiniLM: plants 1 vs plants 2 (same meaning, other words)", round(float(cosines[0, 1]), 3))
    step.figure("MiniLM: plants 1 vs flood 1 (unrelated)", round(float(cosines[0, 2]), 3))
    step.figure("MiniLM: river bank vs money bank (same word, other meaning)", round(float(cosines[4, 5]), 3))

    step.say("""
        Now the same with the GPT we pretrained in level 5: the mean of its last hidden states. It was
        trained to predict the next token, never to compare sentences, and it is a thousand times smaller
        in training data. Expect it to notice shared words and little else.
    """)
    gpt = GPTMeanPoolEncoder.load(str(step.output("5.2")))
    own = gpt.encode(list(SENTENCES), normalize=True)
    own_cosines = cosine_matrix(own)
    step.saved(plot_similarity(own, LABELS, step.picture("6_3_course_gpt_similarity.png"),
                               title="course GPT, mean-pooled: cosine similarity"))
    step.figure("course GPT: plants 1 vs plants 2", round(float(own_cosines[0, 1]), 3))
    step.figure("course GPT: plants 1 vs flood 1", round(float(own_cosines[0, 2]), 3))

    def gap(matrix: np.ndarray) -> float:
        """How much closer the same-meaning pairs are than the unrelated pairs, on average."""
        same = (matrix[0, 1] + matrix[2, 3]) / 2
        unrelated = (matrix[0, 2] + matrix[0, 3] + matrix[1, 2] + matrix[1, 3]) / 4
        return float(same - unrelated)

    minilm_gap = step.figure("MiniLM: same-meaning minus unrelated cosine", round(gap(cosines), 3))
    own_gap = step.figure("course GPT: same-meaning minus unrelated cosine", round(gap(own_cosines), 3))
    step.say(f"""
        The bigger the gap, the better a model tells meaning apart: MiniLM's is {minilm_gap}, the course GPT's
        {own_gap}. Look at the two heatmaps. The course GPT's cosines are high almost everywhere: the mean of
        a next-token predictor's states says "this is English text" first, and what the text means second.
    """)

"""Pictures of word vectors: PCA keeps distances, t-SNE keeps neighbours."""

from __future__ import annotations

import numpy as np

from fromzero.embeddings.plots import cosine_matrix, pca, plot_points, tsne
from fromzero.embeddings.word2vec import WordVectors
from fromzero.lessons.course import Step

TITLE = "Drawing word vectors (PCA and t-SNE)"
NEEDS = ("6.1",)
GROUPS = {
    "family": ("mother", "father", "grandmother", "grandfather", "brother", "sister", "uncle", "aunt"),
    "sky and water": ("sun", "moon", "sky", "earth", "river", "rain", "sea", "water"),
    "doing": ("ran", "went", "saw", "came", "climbed", "laughed", "walked", "looked"),
}


def run(step: Step) -> None:
    step.say("""
        A vector of 50 numbers cannot be drawn, two numbers can. **PCA** turns the cloud of points until
        its widest spread lies along the x axis and the next widest along y, then drops the rest: distances
        in the picture are real distances, shortened. It is a few lines of linear algebra (the SVD of the
        centred points):
    """)
    step.show(pca)
    vectors = WordVectors.load(step.output("6.1"))
    words, groups = [], []
    for group, members in GROUPS.items():
        for word in members:
            if word in vectors.index:  # words the text had too few times have no vector
                words.append(word)
                groups.append(group)
    matrix = np.stack([vectors.vector(word) for word in words])
    step.figure("words drawn", len(words))

    points = pca(matrix)
    centred = matrix - matrix.mean(axis=0)
    kept = float((points**2).sum() / (centred**2).sum())
    step.figure("share of the spread PCA's two axes keep", f"{kept:.0%}")
    step.saved(plot_points(points, words, step.picture("6_2_words_pca.png"), title="word vectors, PCA"))

    step.say("""
        **t-SNE** draws differently: it places the points so that each one's nearest neighbours stay near
        it, and lets everything else go. Clusters show up clearly, but the distance *between* two clusters
        in its picture means nothing. Its *perplexity* (roughly, how many neighbours each point keeps) must
        be smaller than the number of points; the library lowers it for small sets like this one.
    """)
    step.show(tsne)
    points = tsne(matrix, perplexity=30.0, seed=0)
    step.saved(plot_points(points, words, step.picture("6_2_words_tsne.png"), title="word vectors, t-SNE"))

    step.say("The pictures are a summary; the cosines themselves say whether the groups are real:")
    cosines = cosine_matrix(matrix)
    same = np.equal.outer(groups, groups) & ~np.eye(len(words), dtype=bool)
    within = step.figure("mean cosine within a group", round(float(cosines[same].mean()), 3))
    between = step.figure("mean cosine between groups", round(float(cosines[~np.equal.outer(groups, groups)].mean()), 3))
    step.say("Words of one group are closer to each other than to the other groups: the vectors learned the "
             "groups without being told them." if within > between else "Words of one group are not yet closer "
             "to each other than to the other groups: train longer (without --quick) and look again.")
    step.say("Open the two pictures side by side: the same words, two honest but different summaries.")

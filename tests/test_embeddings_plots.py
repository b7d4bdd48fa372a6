"""Pictures of vectors: PCA equal to scikit-learn's, t-SNE guarded against the settings that break it, PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from fromzero.embeddings.plots import cosine_matrix, pca, plot_points, plot_similarity, tsne
from fromzero.errors import InputError

sklearn = pytest.importorskip("sklearn", reason="the reference PCA and t-SNE are scikit-learn's")


def test_pca_equals_scikit_learn_up_to_the_sign_of_each_axis():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(40, 12)) * np.arange(1, 13)
    ours, theirs = pca(x, 3), PCA(3).fit_transform(x)
    signs = np.sign((ours * theirs).sum(axis=0))
    np.testing.assert_allclose(ours, theirs * signs, atol=1e-9)
    assert np.all(np.diff(ours.var(axis=0)) <= 0)  # the first axis spreads the points most
    np.testing.assert_allclose(pca(x * 1.0, 3), ours)  # deterministic signs
    for bad in (0, 13):
        with pytest.raises(InputError, match="components"):
            pca(x, bad)
    with pytest.raises(InputError, match="at least two vectors"):
        pca(x[:1])


def test_tsne_fits_its_perplexity_to_few_points_and_uses_exact_for_many_components():
    x = np.random.default_rng(1).normal(size=(6, 8))
    assert tsne(x, perplexity=30).shape == (6, 2)  # scikit-learn alone refuses perplexity >= points
    assert tsne(x, components=4).shape == (6, 4)  # Barnes-Hut alone refuses more than 3
    with pytest.raises(InputError, match="at least three"):
        tsne(x[:2])


def test_pictures_and_the_similarity_matrix(tmp_path):
    from sklearn.metrics.pairwise import cosine_similarity

    x = np.random.default_rng(2).normal(size=(5, 8))
    np.testing.assert_allclose(cosine_matrix(x), cosine_similarity(x), atol=1e-12)
    words = ["king", "queen", "apple", "banana", "car"]
    for path in (plot_points(pca(x), words, tmp_path / "pca.png"), plot_similarity(x, words, tmp_path / "sim.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="one 2-D point per label"):
        plot_points(pca(x), words[:3], tmp_path / "bad.png")
    with pytest.raises(InputError, match="zero vector"):
        cosine_matrix(np.zeros((2, 3)))
    assert not (tmp_path / "bad.png").exists()

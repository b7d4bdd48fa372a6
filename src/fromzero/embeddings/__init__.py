"""Embeddings: vectors that place similar words and sentences near each other.

A word or a sentence becomes a list of numbers, learned so that things used in the same way end
up close together: the cosine between two vectors measures how alike two words are, and sums
and differences of vectors answer analogies ("man is to king as woman is to ?"). ``word2vec``
learns one vector per word from which words appear near which, with nothing but counting,
random sampling and a dot product.
"""

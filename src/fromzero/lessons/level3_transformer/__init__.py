"""Level 3, the Transformer: embeddings, positions, attention, heads, the block, a whole mini model."""

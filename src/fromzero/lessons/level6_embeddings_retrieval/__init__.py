"""Level 6, embeddings and retrieval: meaning as vectors, search by meaning, answers from your own documents."""

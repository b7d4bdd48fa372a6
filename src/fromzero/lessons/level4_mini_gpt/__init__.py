"""Level 4, the mini GPT: tokenizers, pretraining on the stories, sampling knobs, perplexity."""

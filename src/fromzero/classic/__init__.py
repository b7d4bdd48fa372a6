"""Level 1–2 engines: n-gram language models and NumPy neural networks with hand-written backprop.

Modules (import them directly; this package imports nothing, so ``ngram`` stays NumPy-free):

* ``ngram``      — ``NGramModel``: counts, smoothing (none, add-k, interpolated Kneser–Ney),
  sampling, perplexity, tables; pure Python.
* ``layers``     — Linear, Sigmoid, Tanh, ReLU, GELU, Embedding, Flatten, softmax cross-entropy, MSE.
* ``optim``      — SGD with momentum and Adam, matching ``torch.optim``.
* ``neuron``     — one sigmoid neuron; AND / OR / XOR.
* ``mlp``        — ``MLP`` of any sizes and a mini-batch ``train`` loop.
* ``char_mlp``   — ``CharMLP``: the Bengio et al. (2003) character language model.
* ``gradcheck``  — backward passes against central finite differences.
* ``history`` / ``plots`` — per-epoch metrics as JSON, loss curves, decision-boundary GIFs.
* ``corpus``     — the train/validation split every classic model is measured on.
"""

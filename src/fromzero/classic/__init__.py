"""Level 1–2 engines: n-gram language models and NumPy neural networks with hand-written backprop."""

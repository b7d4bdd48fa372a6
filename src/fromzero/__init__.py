"""fromzero: build your own language model from zero, from counting letters to a chatbot.

The package is layered; lower layers never import higher ones:
data -> tokenizers -> classic / nn -> models -> generation -> training -> finetune -> chat / serve.
"""

__version__ = "0.1.0"

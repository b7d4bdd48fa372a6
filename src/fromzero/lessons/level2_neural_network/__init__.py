"""Level 2, neural networks: a neuron, a hidden layer, backpropagation by hand, and a network that writes."""

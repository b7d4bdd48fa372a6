"""Evaluation: held-out scores that say whether a stage of the course made the model better."""

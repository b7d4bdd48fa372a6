"""Level 1, prediction: language modelling is counting what comes next."""

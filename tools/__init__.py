"""Maintainer tools: run each as a module from the repository root, e.g. `python -m tools.train_robust`."""

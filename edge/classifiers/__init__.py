"""Classifiers: one module per kind of model, sharing the small result types in ``base``."""

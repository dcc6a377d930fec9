"""Capture sources: one module per backend. Sources never import classifiers."""

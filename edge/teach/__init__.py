"""Taught classes: examples shown to the device, recognised on the embedding of its own model."""

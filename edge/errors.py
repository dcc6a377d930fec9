"""Errors a user can cause. The CLI prints them as one line and exits 2; anything else is a bug."""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every user-facing error: the message says what went wrong and where."""


class ConfigError(EdgeError):
    """The configuration file or a command-line option is invalid."""


class ModelError(EdgeError):
    """A model or label file is missing, corrupt or does not fit the code that loads it."""


class DownloadError(ModelError):
    """A model file could not be fetched from the network (no route, no name, refused)."""


class SourceError(EdgeError):
    """A camera, stream, video or image cannot be opened or read."""


class CommandError(EdgeError):
    """An MQTT command was malformed or refused."""

"""edge: a headless video-understanding sensor for the Raspberry Pi and other Linux boxes."""

__version__ = "0.1.0"

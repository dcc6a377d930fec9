"""The live page: a small JSON API, Server-Sent Events and one static page served by the daemon.

``hub`` needs nothing beyond the standard library, so the daemon always feeds it; ``server``
imports aiohttp (the ``web`` extra) only when the page is enabled.
"""

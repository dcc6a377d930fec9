"""Topic names: everything a device publishes or listens to lives under ``<prefix>/<device_id>/``.

One place builds them so the publisher, Home Assistant discovery, ACL examples and tests
cannot disagree about a spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = ("reset", "snapshot", "classify", "model")
"""Commands the daemon understands; anything else on ``cmd/<name>`` gets an error reply."""

AVAILABLE = "online"
STOPPED = "stopped"
OFFLINE = "offline"  # the Last Will: the broker publishes it when the connection dies


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    device_id: str
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def predictions(self) -> str:
        return f"{self.base}/predictions"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def results(self) -> str:
        return f"{self.base}/results"

    @property
    def snapshot(self) -> str:
        """The latest snapshot as raw JPEG bytes (retained), for Home Assistant's image entity."""
        return f"{self.base}/snapshot"

    @property
    def commands(self) -> str:
        """One level under ``cmd/``, so replies (``cmd/x/result``) are not matched."""
        return f"{self.base}/cmd/+"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/result"

    def command_name(self, topic: str) -> str | None:
        """The command a topic addresses, or None if it is not a command topic of this device."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        if not name or "/" in name:
            return None
        return name

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth topic: ``online`` means it (re)started and wants discovery."""
        return f"{self.discovery_prefix}/status"

    def discovery(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.device_id}/{object_id}/config"

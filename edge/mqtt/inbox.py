"""Commands arriving over MQTT, taken in paho's network thread: cheap checks first.

That thread also reads the broker's acknowledgements of events, so nothing here may be slow
or unbounded: a retained command is ignored before anything else, a token bucket drops what
exceeds the device's command rate before the payload is even parsed (a flood costs one
comparison per message, and its rejections cannot crowd out events), and validated
commands wait in a bounded queue for the daemon's main loop.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge.mqtt.payloads import Command, CommandArgs, CommandRejected, parse_command
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # validated commands waiting for the daemon; more get a "busy" reply
DROP_LOG_EVERY_S = 60.0  # a flood is logged when it starts, then at most this often


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` spends one if there is one."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command refused with an error reply (bad payload, or the daemon is busy)."""

    name: str
    error: str
    id: str | None


class Inbox:
    """Turns a received message into a queued command, an error to answer, or nothing.

    ``dropped`` counts commands over the rate limit (never answered), ``retained_ignored``
    the retained ones (never run).
    """

    def __init__(
        self,
        topics: Topics,
        schemas: Mapping[str, type[CommandArgs]],
        *,
        max_bytes: int,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = topics
        self.schemas = schemas
        self.max_bytes = max_bytes
        self.commands: queue.Queue[Command] = queue.Queue(maxsize=QUEUE_SIZE)
        self._bucket = TokenBucket(rate_per_s, burst, clock)
        self._clock = clock
        self.dropped = 0
        self.retained_ignored = 0
        self._next_drop_log = 0.0

    def receive(self, topic: str, payload: bytes, retain: bool) -> Rejection | None:
        """Queue a valid command; return what to answer, if anything."""
        name = self.topics.command_name(topic)
        if name is None:
            return None
        if retain:  # it would run again on every connection: never run, never answered
            self.retained_ignored += 1
            log.debug("mqtt: ignored a retained command on %s", topic)
            return None
        if not self._bucket.take():
            self._drop()
            return None
        try:
            cmd = parse_command(name, payload, self.max_bytes, self.schemas)
        except CommandRejected as exc:
            return Rejection(name, str(exc), exc.id)
        try:
            self.commands.put_nowait(cmd)
        except queue.Full:
            return Rejection(name, "busy: too many commands waiting", cmd.id)
        return None

    def _drop(self) -> None:
        self.dropped += 1
        now = self._clock()
        if now >= self._next_drop_log:
            self._next_drop_log = now + DROP_LOG_EVERY_S
            log.warning(
                "mqtt: commands arrive faster than %g/s; dropping the excess unanswered "
                "(%d dropped so far)",
                self._bucket.rate,
                self.dropped,
            )

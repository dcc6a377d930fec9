"""The MQTT side of the daemon: a paho client, a durable outbox in front of it, and commands.

Threads and ownership:

* paho's network thread (``loop_start``) runs the callbacks. They only flip flags, queue
  acknowledgements and commands (edge/mqtt/inbox.py), and publish directly (availability,
  discovery, command replies).
* the outbox thread (edge/mqtt/sender.py) sends waiting rows in order, at most
  ``mqtt.max_inflight`` unacknowledged, and deletes each once acknowledged. It also replaces
  the client when the broker refuses MQTT 5 and ``mqtt.protocol`` is ``auto``.
* the caller's thread (the daemon's main loop) stores messages in the outbox and returns.

Command replies do not pass through the outbox: they answer a request on the connection it
came on, and a reply stored durably per command is what let a command flood delay events.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge import __version__
from edge.config import MqttConfig
from edge.errors import ConfigError
from edge.mqtt import outbox as ob
from edge.mqtt import session
from edge.mqtt.discovery import Mode, discovery_messages
from edge.mqtt.inbox import Inbox
from edge.mqtt.payloads import COMMAND_SCHEMAS, Command, CommandArgs, encode, reply_payload
from edge.mqtt.sender import Sender
from edge.mqtt.topics import AVAILABLE, STOPPED, Topics

__all__ = ["Command", "Publisher"]

log = logging.getLogger(__name__)

DIRECT_ROOM = 10  # paho in-flight slots beyond the outbox's: availability, discovery, replies


class Publisher:
    """Publishes a device's topics and receives its commands; never blocks the caller on I/O.

    ``outbox_depth``, ``dropped``, ``connected``, ``protocol`` (the MQTT version in use or
    being tried), ``reconnects``, ``rejected`` (messages the broker refused, e.g. by ACL),
    ``commands_dropped`` (over the rate limit) and ``last_error`` (why the last connection
    attempt failed) are plain attributes for stats and health checks.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        outbox_path: Path,
        *,
        model_info: Callable[[], dict] | None = None,
        clock: Callable[[], float] = time.time,
        mode: Mode = "video",
        commands: Mapping[str, type[CommandArgs]] = COMMAND_SCHEMAS,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.topics = Topics(cfg.topic_prefix, device_id, cfg.discovery_prefix)
        self.mode: Mode = mode
        self.models: tuple[str, ...] = ()  # offered by Home Assistant's model select
        self._model_info = model_info
        self._clock = clock
        self._outbox = ob.Outbox(Path(outbox_path), cfg.outbox_max_messages, clock=clock)
        self._qos = 1  # durable messages need an acknowledgement; the outbox resends them
        self._inbox = Inbox(
            self.topics,
            commands,  # the commands this device knows, with their arguments
            max_bytes=cfg.max_command_bytes,
            rate_per_s=cfg.command_rate_per_s,
            burst=cfg.command_burst,
        )
        self._has_password = bool(cfg.password_file or cfg.password_env)
        self.protocol: session.Version = session.first_version(cfg)
        self._fall_back = False  # set when the broker refused MQTT 5 under protocol: auto

        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._write_failures = 0

        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()  # guards replacing _client and _stopping
        self._sender = Sender(self._outbox, f"mqtt-outbox-{device_id}", self._maybe_fall_back)
        self._ever_connected = False
        self._stopping = False
        self._closed = False
        self._logged_error: str | None = None
        hz = cfg.predictions_max_hz
        self._prediction_interval = 1.0 / hz if hz > 0 else None
        self._next_prediction = 0.0
        for notice in self._outbox.notices:  # a salvaged or empty outbox is told, once
            self.publish_event(notice)

    # ------------------------------------------------------------------ status
    @property
    def outbox_depth(self) -> int:
        return self._outbox.depth

    @property
    def dropped(self) -> int:
        return self._outbox.dropped + self._outbox.failed + self._write_failures

    @property
    def outbox_error(self) -> str | None:
        """Why messages cannot be stored right now (a full disk, an I/O error), else None."""
        return self._outbox.error

    @property
    def rejected(self) -> int:
        return self._sender.rejected

    @property
    def commands_dropped(self) -> int:
        return self._inbox.dropped

    def commands(self) -> queue.Queue[Command]:
        return self._inbox.commands

    # --------------------------------------------------------------- lifecycle
    def check(self) -> None:
        """Read the password and load the TLS files now, so a bad setting is refused up front.

        A config reload calls this before it stops the running publisher.
        """
        if self.cfg.username or self._has_password:
            self.cfg.password()
        if self.cfg.tls is not None:
            session.tls_context(self.cfg.tls)

    def start(self) -> None:
        """Connect in the background; returns at once, also when the broker is down."""
        if self._client is not None or self._closed:
            return
        client = self._make_client()
        self._client = client
        self._sender.start()
        session.connect_async(client, self.cfg, self.protocol)
        client.loop_start()
        log.info(
            "mqtt: publishing to %s:%d under %s/ (MQTT %s%s; %d waiting in the outbox)",
            self.cfg.host,
            self.cfg.port,
            self.topics.base,
            self.protocol,
            ", or 3.1.1 if refused" if self.cfg.protocol == "auto" else "",
            self._outbox.depth,
        )

    def stop(self, timeout: float = 1.5) -> None:
        """Flush what the broker takes within ``timeout``, say ``stopped``, disconnect.

        Whatever is not acknowledged by then stays in the outbox for the next start, and so
        does anything published after ``stop`` (the outbox stays open; a stopped publisher
        does not start again: make a new one).
        """
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            client = self._client
        if client is not None:
            reserve = min(0.5, timeout / 3)
            while (
                self.connected and self._outbox.depth > 0 and time.monotonic() < deadline - reserve
            ):
                time.sleep(0.02)
            if self.connected:
                info = client.publish(self.topics.availability, STOPPED, qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            client.disconnect()
            # loop_stop can wait for a connect attempt in progress; do not let it hold us.
            stopper = threading.Thread(target=client.loop_stop, daemon=True)
            stopper.start()
            stopper.join(max(0.05, deadline - time.monotonic()))
            self.connected = False
            self._sender.stop(max(0.2, deadline - time.monotonic()))
        self._closed = True
        log.info("mqtt: stopped (%d messages kept in the outbox)", self._outbox.depth)

    def close(self, timeout: float = 1.0) -> None:
        """Stop, then release the outbox file: for a publisher that is being replaced."""
        self.stop(timeout)
        self._outbox.close()

    # --------------------------------------------------------------- publishing
    def publish_state(self, payload: dict) -> None:
        """Retained, durable. ``seq`` is numbered here (persisted); ``model``/``mode``/``ts``
        are filled in when missing."""
        body = dict(payload)
        if "model" not in body and self._model_info is not None:
            body["model"] = self._model_info()
        body.setdefault("mode", self.mode)
        body.setdefault("ts", self._clock())
        self._put(ob.STATE, self.topics.state, body, self._qos, retain=True, seq="state")

    def publish_event(self, payload: dict) -> None:
        """Durable; ``seq`` grows by one per event across restarts, so gaps are visible."""
        body = dict(payload)
        body.setdefault("ts", self._clock())
        self._put(ob.EVENT, self.topics.events, body, self._qos, seq="events")

    def publish_result(self, payload: dict) -> None:
        """A still-image result; durable, numbered like events."""
        body = dict(payload)
        body.setdefault("ts", self._clock())
        self._put(ob.RESULT, self.topics.results, body, self._qos, seq="results")

    def publish_stats(self, payload: dict) -> None:
        """QoS 0 through the outbox, so an outage keeps a history; dropped first when full."""
        body = dict(payload)
        body.setdefault("ts", self._clock())
        body.setdefault("outbox_depth", self._outbox.depth)
        body.setdefault("mqtt_reconnects", self.reconnects)
        body.setdefault("mqtt_protocol", self.protocol)
        body.setdefault("commands_dropped", self._inbox.dropped)
        self._put(ob.STATS, self.topics.stats, body, 0)

    def publish_prediction(self, payload: dict) -> None:
        """Live view only: QoS 0, at most ``predictions_max_hz``, skipped while offline."""
        if self._prediction_interval is None or not self.connected:
            return
        now = time.monotonic()
        if now < self._next_prediction:
            return
        self._next_prediction = now + self._prediction_interval
        props = session.prediction_properties(self.protocol)
        self._direct(self.topics.predictions, payload, 0, "prediction", props)

    def reply(self, command: str, payload: dict) -> None:
        """Answer a command on ``cmd/<command>/result``: QoS 1 on this connection, not stored.

        A reply is for whoever asked just now; while the broker is away it is dropped (and
        logged), and the caller asks again.
        """
        if not command or any(c in command for c in "/+#\0"):
            raise ValueError(f"invalid command name {command!r}")
        self._direct(self.topics.reply(command), payload, 1, f"reply to {command!r}")

    def _direct(self, topic: str, body: dict, qos: int, what: str, props: Any = None) -> None:
        """Publish on this connection only, not stored; skipped (and logged) while offline."""
        client = self._client
        if client is None or not self.connected:
            log.warning("mqtt: %s not sent: not connected", what)
            return
        try:
            data = encode(body)
        except (TypeError, ValueError) as exc:  # e.g. NaN scores: skip, never stop the loop
            log.error("mqtt: %s not sent, not JSON-encodable: %s", what, exc)
            return
        client.publish(topic, data, qos=qos, properties=props)

    def set_mode(self, mode: Mode, models: tuple[str, ...] | None = None) -> None:
        """Video/still switch or new installed models: discovery adds or removes components."""
        self.mode = mode
        if models is not None:
            self.models = tuple(models)
        if self.connected:
            self._announce()

    def publish_snapshot(self, jpeg: bytes) -> None:
        """The latest snapshot as raw JPEG (retained, QoS 0) for Home Assistant's image entity."""
        client = self._client
        if client is not None:
            client.publish(self.topics.snapshot, jpeg, qos=0, retain=True)

    def _put(
        self,
        kind: str,
        topic: str,
        body: dict,
        qos: int,
        *,
        retain: bool = False,
        seq: str | None = None,
    ) -> None:
        try:
            self._outbox.put(kind, topic, body, qos=qos, retain=retain, seq=seq)
        except (sqlite3.Error, TypeError, ValueError) as exc:
            # A full disk or a NaN in a payload must not stop the sensor: counted and logged.
            self._write_failures += 1
            log.error("mqtt: cannot store a %s message in the outbox: %s", kind, exc)
            return
        self._sender.wake()

    # ------------------------------------------------------------------ client
    def _make_client(self) -> mqtt.Client:
        client_id = self.cfg.client_id or f"edge-{self.device_id}"
        client = session.make_client(self.cfg, self.topics, self.protocol, client_id, DIRECT_ROOM)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _maybe_fall_back(self) -> None:
        """The broker refused MQTT 5: replace the client with a 3.1.1 one (outbox thread)."""
        if not self._fall_back:
            return
        with self._lock:
            old = self._client
            if old is None or self._stopping:
                return
            self.protocol = "3.1.1"
            client = self._make_client()
            self._client = client  # the old client's late callbacks are ignored from now on
            self._fall_back = False
        old.loop_stop()
        log.info("mqtt: %s:%d refuses MQTT 5; using 3.1.1", self.cfg.host, self.cfg.port)
        session.connect_async(client, self.cfg, self.protocol)
        client.loop_start()

    def _report(self, message: str, level: int = logging.WARNING) -> None:
        """Log each distinct reason once per outage, then remember it as why the link is down."""
        if message != self._logged_error:
            self._logged_error = message
            log.log(level, "mqtt: %s (retrying in the background)", message)
        self.last_error = message  # after the log line, so a reader of it finds the line

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._has_password:
            return
        try:  # read again so a rotated secret is picked up on reconnect
            client.username_pw_set(self.cfg.username, self.cfg.password())
        except ConfigError as exc:
            self._report(f"{exc}; using the password read before", logging.ERROR)

    def _on_connect(self, client: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if client is not self._client:
            return  # a client replaced by the fallback to 3.1.1
        try:
            if reason_code.is_failure:
                refused = session.refuses_version(reason_code)
                if refused and self.cfg.protocol == "auto" and self.protocol == "5":
                    client.disconnect()  # ends this client's loop; the outbox thread
                    self._fall_back = True  # connects again with 3.1.1
                    self._sender.wake()
                    return
                hint = ""
                if refused:
                    hint = f" (MQTT {self.protocol}; set mqtt.protocol to auto or the other one)"
                self._report(f"broker refused the connection: {reason_code}{hint}", logging.ERROR)
                return
            # paho does not enforce the broker's Receive Maximum; stay under it ourselves,
            # leaving room for availability, discovery and replies published directly.
            window = self.cfg.max_inflight
            receive_max = getattr(properties, "ReceiveMaximum", None)
            if receive_max:
                window = max(1, min(window, receive_max - DIRECT_ROOM))
            # The outbox is the source of truth: forget paho's copies and resend in order.
            client.drop_out_messages()
            self.connected = True
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self.last_error = None
            self._logged_error = None
            client.subscribe(session.subscriptions(self.topics, self.protocol, self.cfg.discovery))
            # After SUBSCRIBE on the same connection: once "online" is seen, commands are heard.
            client.publish(self.topics.availability, AVAILABLE, qos=1, retain=True)
            self._announce()
            log.info(
                "mqtt: connected to %s:%d with MQTT %s (%s session; %d waiting in the outbox)",
                self.cfg.host,
                self.cfg.port,
                self.protocol,
                "resumed" if flags.session_present else "new",
                self._outbox.depth,
            )
            self._sender.connected(client, window)
        except Exception:
            log.exception("mqtt: error while handling the connection")

    def _on_connect_fail(self, client: mqtt.Client, userdata) -> None:
        if client is not self._client:
            return
        # paho calls this inside its ``except OSError`` block: the active exception says why.
        exc = sys.exc_info()[1]
        reason = f"{type(exc).__name__}: {exc}" if exc else "connection failed"
        self._report(f"cannot connect to {self.cfg.host}:{self.cfg.port}: {reason}")

    def _on_disconnect(self, client: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if client is not self._client or self._fall_back:
            return
        was = self.connected
        self.connected = False
        if self._stopping:
            pass
        elif was:
            self._report(f"connection lost: {reason_code}")
        elif self.last_error is None:  # closed before CONNACK, e.g. a TLS client cert refused
            self._report(f"broker closed the connection before accepting it: {reason_code}")
        self._sender.disconnected()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._sender.acked(mid, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            if msg.topic == self.topics.ha_status:
                if msg.payload.strip() == b"online":
                    log.info("mqtt: Home Assistant is online; announcing discovery again")
                    self._announce()
                return
            rejection = self._inbox.receive(msg.topic, msg.payload, msg.retain)
            if rejection is not None:
                self._reject(rejection.name, rejection.error, rejection.id)
        except Exception:
            log.exception("mqtt: error while handling a message on %s", msg.topic)

    def _reject(self, name: str, error: str, cmd_id: str | None) -> None:
        log.warning("mqtt: rejected command %r: %s", name, error)
        self.reply(name, reply_payload(False, error=error, id=cmd_id))

    def _announce(self) -> None:
        client = self._client
        if not self.cfg.discovery or client is None:
            return
        messages = discovery_messages(
            self.topics, self.mode, sw_version=__version__, models=self.models
        )
        for topic, payload in messages:
            client.publish(topic, encode(payload) if payload else b"", qos=1, retain=True)

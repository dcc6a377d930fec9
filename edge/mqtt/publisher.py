"""The MQTT side of the daemon: a paho client, a durable outbox in front of it, and commands.

Threads and ownership:

* paho's network thread (``loop_start``) runs the callbacks. They only flip flags, queue
  acknowledgements and commands, and publish directly (availability, discovery, replies to
  malformed commands). ``on_publish`` runs while paho holds its message lock, so it never
  takes ours: it hands the ack to the outbox thread through a queue.
* the outbox thread sends waiting rows in order, at most ``WINDOW`` unacknowledged at a time,
  and deletes a row only when the broker acknowledged it (PUBACK for QoS 1, the socket write
  for QoS 0 stats).
* the caller's thread (the daemon's main loop) stores messages in the outbox and returns.

The outbox is the only copy that matters: on every new connection paho's own queue of
unacknowledged messages is dropped and the outbox is sent again from its oldest row, so
delivery resumes in order after broker restarts, network loss and process restarts alike
(at-least-once: a message whose PUBACK was lost arrives twice, never out of order).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge import __version__
from edge.config import MqttConfig, TlsConfig
from edge.errors import ConfigError
from edge.mqtt import outbox as ob
from edge.mqtt.discovery import Mode, discovery_messages
from edge.mqtt.payloads import (
    COMMAND_SCHEMAS,
    Command,
    CommandArgs,
    CommandRejected,
    encode,
    parse_command,
    reply_payload,
)
from edge.mqtt.topics import AVAILABLE, OFFLINE, STOPPED, Topics

__all__ = ["Command", "Publisher"]

log = logging.getLogger(__name__)

WINDOW = 20  # unacknowledged outbox messages on the wire at once (paho's default in-flight)
COMMAND_QUEUE = 64  # validated commands waiting for the daemon; more get a "busy" reply


class Publisher:
    """Publishes a device's topics and receives its commands; never blocks the caller on I/O.

    ``outbox_depth``, ``dropped``, ``connected``, ``reconnects``, ``rejected`` (messages the
    broker refused, e.g. by ACL) and ``last_error`` (why the last connection attempt failed)
    are plain attributes for stats and health checks.
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
        self._qos = max(1, cfg.qos)  # durable messages need an acknowledgement
        self._commands: queue.Queue[Command] = queue.Queue(maxsize=COMMAND_QUEUE)
        self._schemas = commands  # the commands this device knows, with their arguments
        self._has_password = bool(cfg.password_file or cfg.password_env)

        self.connected = False
        self.reconnects = 0
        self.rejected = 0
        self.last_error: str | None = None
        self._write_failures = 0

        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()  # guards _inflight, _cursor, _gen and publishing rows
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, int, Any]] = queue.SimpleQueue()
        self._inflight: dict[int, tuple[int, str]] = {}  # mid -> (row id, topic)
        self._cursor = 0  # highest row id handed to paho on this connection
        self._window = WINDOW
        self._gen = 0  # connection generation; acks from an older one are ignored
        self._ever_connected = False
        self._stopping = False
        self._closed = False
        self._pump: threading.Thread | None = None
        self._pump_stop = False
        self._logged_error: str | None = None
        hz = cfg.predictions_max_hz
        self._prediction_interval = 1.0 / hz if hz > 0 else None
        self._next_prediction = 0.0

    # ------------------------------------------------------------------ status
    @property
    def outbox_depth(self) -> int:
        return self._outbox.depth

    @property
    def dropped(self) -> int:
        return self._outbox.dropped + self._write_failures

    def commands(self) -> queue.Queue[Command]:
        return self._commands

    # --------------------------------------------------------------- lifecycle
    def check(self) -> None:
        """Read the password and load the TLS files now, so a bad setting is refused up front.

        A config reload calls this before it stops the running publisher.
        """
        if self.cfg.username or self._has_password:
            self.cfg.password()
        if self.cfg.tls is not None:
            _tls_context(self.cfg.tls)

    def start(self) -> None:
        """Connect in the background; returns at once, also when the broker is down."""
        if self._client is not None or self._closed:
            return
        client = self._make_client()
        self._client = client
        self._pump = threading.Thread(
            target=self._pump_loop, name=f"mqtt-outbox-{self.device_id}", daemon=True
        )
        self._pump.start()
        client.connect_async(
            self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=True
        )
        client.loop_start()
        log.info(
            "mqtt: publishing to %s:%d under %s/ (%d waiting in the outbox)",
            self.cfg.host,
            self.cfg.port,
            self.topics.base,
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
            self._pump_stop = True
            self._wake.set()
            if self._pump is not None:
                self._pump.join(max(0.2, deadline - time.monotonic()))
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
        self._put(ob.STATS, self.topics.stats, body, 0)

    def publish_prediction(self, payload: dict) -> None:
        """Live view only: QoS 0, at most ``predictions_max_hz``, skipped while offline."""
        if self._prediction_interval is None or not self.connected:
            return
        now = time.monotonic()
        if now < self._next_prediction:
            return
        self._next_prediction = now + self._prediction_interval
        client = self._client
        if client is None:
            return
        try:
            data = encode(payload)
        except (TypeError, ValueError) as exc:  # e.g. NaN scores: skip, never stop the loop
            log.error("mqtt: prediction not sent, not JSON-encodable: %s", exc)
            return
        client.publish(self.topics.predictions, data, qos=0)

    def reply(self, command: str, payload: dict) -> None:
        """Answer a command on ``cmd/<command>/result`` (durable, QoS 1)."""
        if not command or any(c in command for c in "/+#\0"):
            raise ValueError(f"invalid command name {command!r}")
        self._put(ob.REPLY, self.topics.reply(command), dict(payload), self._qos)

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
        self._wake.set()

    # ------------------------------------------------------------------ client
    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"edge-{self.device_id}",
            protocol=mqtt.MQTTv5,
        )
        client.suppress_exceptions = True
        if log.isEnabledFor(logging.DEBUG):
            # Only when debugging: paho logs an ERROR line on every retry while the broker is down.
            client.enable_logger(logging.getLogger("edge.mqtt.paho"))
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        if cfg.username or self._has_password:
            client.username_pw_set(cfg.username, cfg.password())
        if cfg.tls is not None:
            client.tls_set_context(_tls_context(cfg.tls))
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _report(self, message: str, level: int = logging.WARNING) -> None:
        """Remember why the connection is down; log each distinct reason once per outage."""
        self.last_error = message
        if message != self._logged_error:
            self._logged_error = message
            log.log(level, "mqtt: %s (retrying in the background)", message)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._has_password:
            return
        try:  # read again so a rotated secret is picked up on reconnect
            client.username_pw_set(self.cfg.username, self.cfg.password())
        except ConfigError as exc:
            self._report(f"{exc}; using the password read before", logging.ERROR)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                self._report(f"broker refused the connection: {reason_code}", logging.ERROR)
                return
            # paho does not enforce the broker's Receive Maximum; stay under it ourselves,
            # leaving room for availability and discovery published directly.
            receive_max = getattr(properties, "ReceiveMaximum", None) or 65535
            window = max(1, min(WINDOW, receive_max - 6))
            with self._lock:
                self._window = window
                # The outbox is the source of truth: forget paho's copies and resend in order.
                client.drop_out_messages()
                self._inflight.clear()
                self._cursor = 0
                self._gen += 1
                self.connected = True
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self.last_error = None
            self._logged_error = None
            subs = [(self.topics.commands, SubscribeOptions(qos=1))]
            if self.cfg.discovery:
                subs.append((self.topics.ha_status, SubscribeOptions(qos=1)))
            client.subscribe(subs)
            # After SUBSCRIBE on the same connection: once "online" is seen, commands are heard.
            client.publish(self.topics.availability, AVAILABLE, qos=1, retain=True)
            self._announce()
            log.info(
                "mqtt: connected to %s:%d (%d waiting in the outbox)",
                self.cfg.host,
                self.cfg.port,
                self._outbox.depth,
            )
            self._wake.set()
        except Exception:
            log.exception("mqtt: error while handling the connection")

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError`` block: the active exception says why.
        exc = sys.exc_info()[1]
        reason = f"{type(exc).__name__}: {exc}" if exc else "connection failed"
        self._report(f"cannot connect to {self.cfg.host}:{self.cfg.port}: {reason}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if self._stopping:
            pass
        elif was:
            self._report(f"connection lost: {reason_code}")
        elif self.last_error is None:  # closed before CONNACK, e.g. a TLS client cert refused
            self._report(f"broker closed the connection before accepting it: {reason_code}")
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put((self._gen, mid, reason_code))
        self._wake.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            if msg.topic == self.topics.ha_status:
                if msg.payload.strip() == b"online":
                    log.info("mqtt: Home Assistant is online; announcing discovery again")
                    self._announce()
                return
            name = self.topics.command_name(msg.topic)
            if name is None:
                return
            try:
                cmd = parse_command(name, msg.payload, self.cfg.max_command_bytes, self._schemas)
            except CommandRejected as exc:
                self._reject(name, str(exc), exc.id)
                return
            if msg.retain:  # it would run again on every reconnect
                self._reject(name, "retained commands are ignored; publish without retain", cmd.id)
                return
            try:
                self._commands.put_nowait(cmd)
            except queue.Full:
                self._reject(name, "busy: too many commands waiting", cmd.id)
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

    # ------------------------------------------------------------------ outbox
    def _pump_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._drain_acks()
                if self._pump_stop:
                    return
                self._send_window()
            except Exception:
                if self._pump_stop:
                    return
                log.exception("mqtt: outbox sender error")
                time.sleep(0.5)

    def _drain_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                gen, mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                entry = self._inflight.pop(mid, None) if gen == self._gen else None
            if entry is None:
                continue  # not an outbox message, or from a connection since replaced
            row_id, topic = entry
            if reason.is_failure:
                self.rejected += 1
                log.error("mqtt: broker refused a message on %s: %s; dropping it", topic, reason)
            done.append(row_id)
        if done:
            self._outbox.delete(done)

    def _send_window(self) -> None:
        bad: list[int] = []
        with self._lock:
            client = self._client
            room = self._window - len(self._inflight)
            if client is None or not self.connected or room <= 0:
                return
            for row in self._outbox.fetch(self._cursor, room):
                self._cursor = row.id
                try:
                    info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                except ValueError as exc:
                    log.error("mqtt: cannot publish on %r: %s; dropping it", row.topic, exc)
                    bad.append(row.id)
                    continue
                self._inflight[info.mid] = (row.id, row.topic)
        if bad:
            self._outbox.delete(bad)


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (or the system CAs); optional client certificate."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"mqtt.tls.{key}: {path} not found")
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            # An empty password makes an encrypted key fail here instead of prompting on a tty.
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file), password="")
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"mqtt.tls: cannot load certificates: {exc}") from None
    if tls.insecure:
        ctx.check_hostname = False
    return ctx

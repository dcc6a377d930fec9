"""How edge speaks MQTT on each protocol version: the paho client, the session, subscriptions.

MQTT 5 and 3.1.1 carry everything edge relies on (Last Will, retained messages, QoS 1,
persistent sessions); 5 adds a few things this module uses where they exist:

* session expiry (``mqtt.session_expiry_s``): on 3.1.1 a persistent session lasts until
  the broker's own limit (Mosquitto's ``persistent_client_expiration``; NATS keeps it until
  a clean connect), and ``session_expiry_s: 0`` asks for a clean session on both;
* Receive Maximum (the publisher stays under it); on 3.1.1 only ``mqtt.max_inflight`` bounds
  the unacknowledged messages;
* message expiry on ``predictions``, so a queued live view cannot arrive stale; on 3.1.1
  they are QoS 0, never queued by edge, and carry ``ts``;
* subscription options: a retained command keeps its retain flag and re-subscribing does not
  fetch retained commands again. On 3.1.1 a broker clears the flag on live delivery, so a
  command published with retain while the device is connected runs once, like any other.

Command replies use neither version's request/response properties: the reply topic
(``cmd/<name>/result``) and the echoed ``id`` are the whole contract.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.config import MqttConfig, TlsConfig
from edge.errors import ConfigError
from edge.mqtt.topics import OFFLINE, Topics

Version = Literal["5", "3.1.1"]

PREDICTION_EXPIRY_S = 10  # MQTT 5: a live top-5 older than this is worthless
_UNSUPPORTED_VERSION = 0x84  # CONNACK reason code; paho maps 3.1.1's return code 1 to it
_PAHO: dict[Version, mqtt.MQTTProtocolVersion] = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


def first_version(cfg: MqttConfig) -> Version:
    """The version to try first: 5 unless the config asks for 3.1.1."""
    return "3.1.1" if cfg.protocol == "3.1.1" else "5"


def refuses_version(reason_code: ReasonCode) -> bool:
    """True when a CONNACK says the broker does not speak the version we asked for."""
    return reason_code.value == _UNSUPPORTED_VERSION


def make_client(
    cfg: MqttConfig, topics: Topics, version: Version, client_id: str, direct_room: int
) -> mqtt.Client:
    """A paho client with the Last Will, reconnect delays, in-flight limit, credentials, TLS.

    ``direct_room``: in-flight slots beyond the outbox's, for what is published directly.
    """
    persistent = cfg.session_expiry_s > 0
    if version == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=_PAHO["5"])
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=_PAHO["3.1.1"],
        )
    client.suppress_exceptions = True
    if logging.getLogger("edge.mqtt").isEnabledFor(logging.DEBUG):
        # Only when debugging: paho logs an ERROR line on every retry while the broker is down.
        client.enable_logger(logging.getLogger("edge.mqtt.paho"))
    client.max_inflight_messages_set(cfg.max_inflight + direct_room)
    client.will_set(topics.availability, OFFLINE, qos=1, retain=True)
    client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
    if cfg.username or cfg.password_file or cfg.password_env:
        client.username_pw_set(cfg.username, cfg.password())
    if cfg.tls is not None:
        client.tls_set_context(tls_context(cfg.tls))
    return client


def connect_async(client: mqtt.Client, cfg: MqttConfig, version: Version) -> None:
    """Start connecting in the background, resuming the persistent session if there is one."""
    if version == "3.1.1":  # the session flag was given to the Client
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        return
    props = Properties(PacketTypes.CONNECT)
    persistent = cfg.session_expiry_s > 0
    if persistent:
        props.SessionExpiryInterval = cfg.session_expiry_s
    client.connect_async(
        cfg.host,
        cfg.port,
        keepalive=cfg.keepalive_s,
        clean_start=not persistent,
        properties=props,
    )


def subscriptions(topics: Topics, version: Version, discovery: bool) -> list[Any]:
    """The command topics (and Home Assistant's birth topic), at QoS 1."""
    if version == "3.1.1":
        subs: list[Any] = [(topics.commands, 1)]
        if discovery:
            subs.append((topics.ha_status, 1))
        return subs
    commands = SubscribeOptions(
        qos=1,
        retainAsPublished=True,  # so a live retained command is seen as retained and ignored
        retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
    )
    subs = [(topics.commands, commands)]
    if discovery:
        subs.append((topics.ha_status, SubscribeOptions(qos=1)))
    return subs


def prediction_properties(version: Version) -> Properties | None:
    if version == "3.1.1":
        return None
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = PREDICTION_EXPIRY_S
    return props


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
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

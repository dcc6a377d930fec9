"""Real brokers for tests: one per test, on a free 127.0.0.1 port, in the test's tmp dir.

Mosquitto (MQTT 5 and 3.1.1) is the default; NATS's MQTT gateway (nats-server, 3.1.1 only,
its state in JetStream) is the second broker, with the same interface.

The fixtures ``broker``, ``broker_factory`` and ``make_pub`` are registered by
tests/conftest.py, so a test module just takes them as parameters::

    def test_x(broker):                      # plain broker, anonymous, persistence on
        with broker.subscriber("edge/#") as sub:
            ...
            sub.wait_for(lambda msgs: any(m.topic.endswith("/state") for m in msgs))

    def test_y(broker_factory, tmp_path):    # options: users, ACL, TLS, a bridge
        ca = make_test_ca(tmp_path / "ca")
        b = broker_factory(users={"dev1": "pw"}, acl=ACL, tls=ca)
        site = broker_factory(bridge=(central.port, "edge/#"))  # forwards edge/# out, QoS 1

    def test_z(nats_broker):                 # NATS, with JetStream in the test's tmp dir

``Broker.stop()`` (SIGTERM: Mosquitto saves retained messages and persistent sessions),
``start()`` (same port, same config, same data) and ``kill()`` (SIGKILL) let a test take the
broker away mid-run; ``TcpProxy`` takes the network away from one client instead (blackhole
or cut). ``broker.mqtt_config(**overrides)`` gives an ``MqttConfig`` pointing at it with
short reconnect delays; ``make_test_ca(dir)`` makes a CA, server and client certificates
with openssl; ``wait_until(cond)`` polls any condition with a timeout. Every broker a
fixture made is killed at test end, whatever happened. If ``mosquitto`` (or ``nats-server``)
is missing the test is skipped locally and fails in CI (``require_mosquitto``,
``require_nats``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttConfig
from edge.mqtt.publisher import Publisher
from tests.support.assets import missing

MOSQUITTO = Path(shutil.which("mosquitto") or "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path(shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd")
NATS_SERVER = Path(shutil.which("nats-server") or "/usr/sbin/nats-server")
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
HOST = "127.0.0.1"


def require_mosquitto(*, passwd: bool = False) -> None:
    """Mosquitto is a real part the MQTT tests need: skip locally, fail in CI."""
    absent = [
        str(p) for p in (MOSQUITTO, *((MOSQUITTO_PASSWD,) if passwd else ())) if not p.exists()
    ]
    if absent:
        missing(", ".join(absent), "install Mosquitto (`apt-get install mosquitto`)")


def require_nats() -> None:
    """nats-server is the second real broker: skip locally, fail in CI."""
    if not NATS_SERVER.exists():
        missing(str(NATS_SERVER), "install the NATS server (`apt-get install nats-server`)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True, slots=True)
class TestCA:
    """A throw-away CA with a server certificate for 127.0.0.1/localhost and a client cert."""

    __test__ = False  # not a test class, despite the name

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def make_test_ca(directory: Path, *, name: str = "edge test CA") -> TestCA:
    """Create a CA and sign a server and a client certificate with ``openssl`` (EC P-256)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    for who, usage, san in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client", "clientAuth", ""),
    ):
        _openssl(
            "req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}", cwd=d
        )
        (d / f"{who}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
            f"authorityKeyIdentifier=keyid,issuer\n{san}"
        )
        _openssl(
            "x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.ext",
            cwd=d,
        )  # fmt: skip
    return TestCA(
        d / "ca.crt", d / "ca.key", d / "server.crt", d / "server.key",
        d / "client.crt", d / "client.key",
    )  # fmt: skip


# --------------------------------------------------------------------------- broker


class TcpProxy:
    """A TCP forwarder in front of a broker, to take the network away from a client.

    ``blackhole()`` keeps connections open but throws away what is sent in both directions
    (a dead Wi-Fi link: messages and their acknowledgements vanish); ``cut()`` closes every
    connection (the client notices at once); ``restore()`` forwards again. ``discarded``
    counts the client-to-broker bytes thrown away, so a test can wait until something was
    actually lost. Point the client at ``proxy.port``.
    """

    def __init__(self, target_port: int, host: str = HOST) -> None:
        self.target = (host, target_port)
        self._server = socket.create_server((HOST, 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._blackhole = False
        self.discarded = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while data := src.recv(65536):
                if self._blackhole:
                    if upward:
                        self.discarded += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def blackhole(self) -> None:
        self._blackhole = True

    def restore(self) -> None:
        self._blackhole = False

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BrokerProcess:
    """What every test broker shares: one process on ``port``, its log, clients for it."""

    name = "broker"
    workdir: Path
    port: int
    log_path: Path
    tls: TestCA | None = None
    protocol = "auto"  # mqtt.protocol in the configs mqtt_config() makes for this broker

    def __init__(self, workdir: Path, port: int | None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _require(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ process
    def start(self, timeout: float = 20.0):
        """Start (again, on the same port) and return once it accepts TCP connections."""
        self._require()
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen on {self.port}:\n{self.log()}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM): retained messages and persistent sessions are saved."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Abrupt end (SIGKILL), like a crash or power loss of the broker host."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: int, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ clients
    def mqtt_config(self, **overrides: Any):
        """An ``MqttConfig`` for this broker with quick reconnects; ``overrides`` win."""
        from edge.config import MqttConfig, TlsConfig

        fields: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "keepalive_s": 10,
            "protocol": self.protocol,
        }
        if self.tls is not None:
            fields["tls"] = TlsConfig(ca_file=self.tls.ca_cert)
        fields.update(overrides)
        return MqttConfig(**fields)

    def subscriber(self, *topics: str, **kw: Any) -> Subscriber:
        """A connected Subscriber on ``topics`` (default ``#``); see Subscriber for options."""
        if self.tls is not None:
            kw.setdefault("ca_file", self.tls.ca_cert)
        return Subscriber(self.host, self.port, topics or ("#",), **kw)


class Broker(_BrokerProcess):
    """One Mosquitto process with its own config, data and log in ``workdir``.

    users: name -> password, written with ``mosquitto_passwd -b -c``; anonymous access is
    then refused. acl: the text of an ACL file (``user x`` / ``topic readwrite a/#`` lines).
    tls: a TestCA; the listener then speaks TLS only. require_certificate: TLS clients must
    present a certificate signed by the CA. bridge: (port, pattern) of a central broker on
    127.0.0.1 that this one forwards ``pattern`` to at QoS 1 (``topic <pattern> out 1``),
    keeping what it cannot forward yet (a persistent bridge session); bridge_in: a pattern
    the central broker's messages come in on (``topic <pattern> in 1``).
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        tls: TestCA | None = None,
        require_certificate: bool = False,
        persistence: bool = True,
        port: int | None = None,
        bridge: tuple[int, str] | None = None,
        bridge_in: str | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.tls = tls
        self.users = dict(users or {})
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if users else 'true'}",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            "max_queued_messages 100000",
            "queue_qos0_messages true",  # QoS 0 (stats) also waits for persistent sessions
        ]
        if os.geteuid() == 0:
            # As root Mosquitto would switch to user "mosquitto", who cannot read a 0700 tmp dir.
            lines.append("user root")
        if persistence:
            data = self.workdir / "data"
            data.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {data}/"]
        if users:
            require_mosquitto(passwd=True)
            pw = self.workdir / "passwd"
            for i, (name, password) in enumerate(self.users.items()):
                args = ["-b", *(["-c"] if i == 0 else []), str(pw), name, password]
                subprocess.run([str(MOSQUITTO_PASSWD), *args], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        if acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(acl)
            lines.append(f"acl_file {acl_path}")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
        if bridge is not None:
            central_port, pattern = bridge
            lines += [
                "connection central",
                f"address {HOST}:{central_port}",
                f"topic {pattern} out 1",
                *([f"topic {bridge_in} in 1"] if bridge_in else []),
                "cleansession false",
                "restart_timeout 1 2",  # try the central broker again within ~2 s
                "notifications false",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def _require(self) -> None:
        require_mosquitto()

    def _command(self) -> list[str]:
        return [str(MOSQUITTO), "-c", str(self.conf_path)]


class NatsBroker(_BrokerProcess):
    """nats-server with its MQTT gateway (MQTT 3.1.1 only), JetStream under ``workdir``.

    Retained messages, sessions and QoS 1 messages waiting for a subscriber live in
    JetStream streams, so they outlive ``stop()``/``kill()`` and ``start()``.
    """

    name = "nats-server"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.client_port = free_port()  # NATS's own protocol; the tests speak only MQTT
        self.monitor_port = free_port()  # its HTTP monitoring: what JetStream has stored
        self.log_path = self.workdir / "nats.log"
        self.conf_path = self.workdir / "nats.conf"
        store = self.workdir / "jetstream"
        self.conf_path.write_text(
            f"server_name: edge-test-{self.port}\n"
            f"listen: {HOST}:{self.client_port}\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
            # A message delivered but not acknowledged (the subscriber's connection died) is
            # sent again after ack_wait (default 30 s); tests do not wait that long.
            f'mqtt {{ listen: {HOST}:{self.port}, ack_wait: "2s" }}\n'
            f"http: {HOST}:{self.monitor_port}\n"
        )

    def stored(self, stream: str = "$MQTT_msgs") -> int:
        """How many messages ``stream`` has ever stored (its last sequence number).

        NATS 2.9 acknowledges a QoS 1 PUBLISH before JetStream has stored it, so a message
        acknowledged an instant before the broker stops can be lost by the broker itself.
        """
        url = f"http://{HOST}:{self.monitor_port}/jsz?streams=true"
        # Straight to the broker on loopback, whatever proxy the environment names.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(url, timeout=5) as r:
            info = json.load(r)
        for account in info.get("account_details", []):
            for detail in account.get("stream_detail", []):
                if detail["name"] == stream:
                    return int(detail["state"]["last_seq"])
        return 0

    def _require(self) -> None:
        require_nats()

    def _command(self) -> list[str]:
        return [str(NATS_SERVER), "-c", str(self.conf_path), "-l", str(self.log_path)]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


class Subscriber:
    """A real paho client that records every message it gets, with waits on what arrived.

    persistent=True uses a non-clean MQTT 3.1.1 session under a fixed client id, so messages
    published while it is disconnected (e.g. across ``Broker.stop()``/``start()``, which keeps
    sessions) are queued by the broker and delivered after it reconnects.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: tuple[str, ...] = ("#",),
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        persistent: bool = False,
        qos: int = 1,
        timeout: float = 10.0,
    ) -> None:
        self.topics = topics
        self.qos = qos
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._connected = False
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sub-{os.getpid()}-{id(self):x}",
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(
                ca_certs=str(ca_file),
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
            )
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise AssertionError(f"subscriber could not connect to {host}:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        with self._cond:
            self._connected = True
            self._cond.notify_all()
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._cond.notify_all()

    # ------------------------------------------------------------------ reading
    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def json(self, topic: str) -> list[Any]:
        return [m.json() for m in self.on(topic) if m.payload]

    def wait_for(
        self, cond: Callable[[list[Message]], Any], timeout: float = 20.0, what: str = "messages"
    ) -> Any:
        """Block until ``cond(messages)`` is truthy (re-checked on each message); return it."""
        result: Any = None

        def check() -> bool:
            nonlocal result
            result = cond(list(self.messages))
            return bool(result)

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                tail = "\n".join(f"  {m.topic} {m.payload[:120]!r}" for m in self.messages[-15:])
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}; last:\n{tail}"
                )
        return result

    def wait_payload(self, topic: str, payload: str | bytes, timeout: float = 20.0) -> Message:
        """The first message on ``topic`` with exactly ``payload``."""
        want = payload.encode() if isinstance(payload, str) else payload
        return self.wait_for(
            lambda ms: next((m for m in ms if m.topic == topic and m.payload == want), None),
            timeout,
            f"{want!r} on {topic}",
        )

    def wait_count(self, topic: str, n: int, timeout: float = 20.0) -> list[Message]:
        """At least ``n`` messages on ``topic``; returns all of them."""
        return self.wait_for(
            lambda ms: (got := [m for m in ms if m.topic == topic]) and len(got) >= n and got,
            timeout,
            f"{n} messages on {topic}",
        )

    def wait_connected(self, timeout: float = 20.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._connected, timeout):
                raise AssertionError("subscriber did not reconnect")

    # ------------------------------------------------------------------ writing
    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- fixtures


# Fixture functions carry a ``_fixture`` suffix and a ``name=``: importing them into a test
# module then does not shadow the test's ``broker`` parameter (ruff F811).


@pytest.fixture(name="broker_factory")
def broker_factory_fixture(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Make and start brokers with options (see Broker); all are killed at test end."""
    require_mosquitto()
    made: list[Broker] = []

    def make(**kw: Any) -> Broker:
        b = Broker(tmp_path / f"broker{len(made)}", **kw)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.kill()


@pytest.fixture(name="broker")
def broker_fixture(broker_factory: Callable[..., Broker]) -> Broker:
    """A started anonymous Mosquitto with persistence, on its own port."""
    return broker_factory()


BROKERS = ("mosquitto-5", "mosquitto-3.1.1", "nats-3.1.1")
"""Every broker and protocol edge is tested on; NATS is reached through ``protocol: auto``."""


@pytest.fixture(name="any_broker", params=BROKERS)
def any_broker_fixture(request: pytest.FixtureRequest) -> _BrokerProcess:
    """Each of BROKERS in turn: the same test on Mosquitto with MQTT 5 and 3.1.1, and NATS."""
    if request.param.startswith("nats"):
        return request.getfixturevalue("nats_broker")
    b = request.getfixturevalue("broker")
    b.protocol = "3.1.1" if request.param.endswith("3.1.1") else "5"
    return b


@pytest.fixture(name="nats_broker")
def nats_broker_fixture(tmp_path: Path) -> Iterator[NatsBroker]:
    """A started nats-server with its MQTT gateway on its own port; killed at test end."""
    require_nats()
    b = NatsBroker(tmp_path / "nats")
    try:
        yield b.start()
    finally:
        b.kill()


TEST_MODEL = {"name": "movinet-a0-stream-int8", "sha256": "ab" * 32}


@pytest.fixture(name="make_pub")
def make_pub_fixture(tmp_path: Path) -> Iterator[Callable[..., Publisher]]:
    """Build publishers for a broker (or an ``MqttConfig``); every one is stopped at test end.

    ``make_pub(broker, device_id="dev1", outbox=None, cfg={...overrides}, **publisher_kw)``:
    the outbox goes in tmp_path unless given, ``model_info`` defaults to ``TEST_MODEL``.
    """
    made: list[Publisher] = []

    def make(
        target: Any,
        device_id: str = "dev1",
        *,
        outbox: Path | None = None,
        cfg: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Publisher:
        if not isinstance(target, MqttConfig):  # a broker of any kind
            target = target.mqtt_config(**(cfg or {}))
        kw.setdefault("model_info", lambda: TEST_MODEL)
        pub = Publisher(target, device_id, outbox or tmp_path / f"outbox-{len(made)}.sqlite", **kw)
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.stop(timeout=0.5)


# The plain names can be imported too, at the price of a ruff F811 on each test that takes
# ``broker`` as a parameter.
broker = broker_fixture
broker_factory = broker_factory_fixture

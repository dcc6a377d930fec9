"""TLS with a test CA, a Mosquitto password file and an ACL, against a real broker."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.config import TlsConfig
from edge.errors import ConfigError
from edge.mqtt.discovery import device_topic
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from tests.support.broker import (
    TestCA,
    make_test_ca,
    wait_until,
)

PASSWORD = "dev1-Secret-42"
ADMIN = ("admin", "admin-pw")
ACL = """\
user dev1
topic readwrite edge/dev1/#
topic write homeassistant/#
topic read homeassistant/status

user admin
topic readwrite #
"""
DEV1 = Topics("edge", "dev1")
DEV2 = Topics("edge", "dev2")


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> TestCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def secure_broker(broker_factory, ca: TestCA):
    return broker_factory(users={"dev1": PASSWORD, ADMIN[0]: ADMIN[1]}, acl=ACL, tls=ca)


def _password_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _assert_not_logged(caplog, secret: str) -> None:
    assert caplog.records, "expected some log output to check"
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_tls_and_password_file_connect_and_publish(
    secure_broker, make_pub, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # paho's own packet log included
    cfg = secure_broker.mqtt_config(
        username="dev1", password_file=_password_file(tmp_path, PASSWORD)
    )
    with secure_broker.subscriber("#", username=ADMIN[0], password=ADMIN[1]) as sub:
        pub = make_pub(cfg)
        pub.start()
        sub.wait_payload(DEV1.availability, "online")
        pub.publish_event({"type": "start", "label": "walking"})
        assert sub.wait_count(DEV1.events, 1)[0].json()["seq"] == 1
        sub.wait_count(device_topic(DEV1), 1)  # ACL lets discovery through
        assert pub.last_error is None and pub.rejected == 0
    _assert_not_logged(caplog, PASSWORD)


def test_wrong_password_is_refused_and_reported_then_a_rotated_one_works(
    secure_broker, make_pub, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", "not-the-password")
    cfg = secure_broker.mqtt_config(username="dev1", password_env="EDGE_TEST_MQTT_PW")
    pub = make_pub(cfg)
    pub.start()
    wait_until(lambda: pub.last_error and "refused" in pub.last_error, what="refusal")
    assert not pub.connected
    assert any(
        r.levelno >= logging.ERROR and "refused the connection" in r.getMessage()
        for r in caplog.records
    )
    _assert_not_logged(caplog, "not-the-password")
    # The secret is read again before each attempt: fixing it needs no restart.
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", PASSWORD)
    wait_until(lambda: pub.connected, what="connection with the rotated password")
    assert pub.last_error is None
    _assert_not_logged(caplog, PASSWORD)


def test_acl_denies_another_devices_topics(secure_broker, make_pub, tmp_path: Path) -> None:
    pw = _password_file(tmp_path, PASSWORD)
    with secure_broker.subscriber("edge/#", username=ADMIN[0], password=ADMIN[1]) as sub:
        # dev1's credentials used to publish as dev2: the broker refuses each message.
        intruder = make_pub(secure_broker.mqtt_config(username="dev1", password_file=pw), "dev2")
        intruder.start()
        intruder.publish_event({"type": "start", "label": "spoofed"})
        wait_until(lambda: intruder.rejected >= 1, what="the broker to refuse dev2's event")
        wait_until(lambda: intruder.outbox_depth == 0, what="refused message leaving the outbox")
        # The same subscriber does get dev1's own messages.
        own = make_pub(
            secure_broker.mqtt_config(username="dev1", password_file=pw, client_id="edge-dev1b")
        )
        own.start()
        own.publish_event({"type": "start", "label": "genuine"})
        sub.wait_count(DEV1.events, 1)
        assert sub.on(DEV2.events) == []
        assert sub.on(DEV2.availability) == []


def test_untrusted_broker_certificate_is_refused(secure_broker, make_pub, tmp_path: Path) -> None:
    other = make_test_ca(tmp_path / "other-ca", name="somebody else")
    cfg = secure_broker.mqtt_config(
        username="dev1",
        password_file=_password_file(tmp_path, PASSWORD),
        tls=TlsConfig(ca_file=other.ca_cert),
    )
    pub = make_pub(cfg)
    pub.start()
    wait_until(
        lambda: pub.last_error and "CERTIFICATE_VERIFY_FAILED" in pub.last_error,
        what="certificate verification failure",
    )
    assert not pub.connected


def test_client_certificate_when_the_broker_requires_one(
    broker_factory, make_pub, ca: TestCA
) -> None:
    b = broker_factory(tls=ca, require_certificate=True)
    with_cert = make_pub(
        b.mqtt_config(
            tls=TlsConfig(ca_file=ca.ca_cert, cert_file=ca.client_cert, key_file=ca.client_key)
        )
    )
    without = make_pub(b.mqtt_config(client_id="edge-nocert"))
    with_cert.start()
    without.start()
    wait_until(lambda: with_cert.connected, what="connection with a client certificate")
    wait_until(lambda: without.last_error, what="refusal without a client certificate")
    assert not without.connected


def test_bad_security_settings_are_config_errors(broker_factory, tmp_path: Path, ca) -> None:
    b = broker_factory(tls=ca)
    missing = b.mqtt_config(tls=TlsConfig(ca_file=tmp_path / "nope.crt"))
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file: .*nope\.crt not found"):
        Publisher(missing, "dev1", tmp_path / "o1.sqlite").start()
    no_env = b.mqtt_config(username="dev1", password_env="EDGE_TEST_UNSET_VARIABLE")
    with pytest.raises(ConfigError, match=r"mqtt\.password_env"):
        Publisher(no_env, "dev1", tmp_path / "o2.sqlite").start()
    not_pem = tmp_path / "garbage.crt"
    not_pem.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"mqtt\.tls: cannot load"):
        Publisher(b.mqtt_config(tls=TlsConfig(ca_file=not_pem)), "dev1", tmp_path / "o3").start()

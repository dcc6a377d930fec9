"""The notify protocol against a real unix datagram socket, as systemd listens."""

from __future__ import annotations

import os
import socket

from edge.notify import Notifier


def _listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    return sock, path


def test_ready_status_watchdog_reach_the_socket(tmp_path):
    sock, path = _listener(tmp_path)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    assert n.enabled and n.watchdog_s == 30.0
    n.ready("model loaded")
    assert sock.recv(1024).decode().split("\n") == ["READY=1", "STATUS=model loaded"]
    n.watchdog()
    assert sock.recv(1024) == b"WATCHDOG=1"
    n.stopping()
    assert sock.recv(1024) == b"STOPPING=1"
    n.close()
    sock.close()


def test_abstract_socket_address(tmp_path):
    name = f"edge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
    assert sock.recv(1024) == b"STATUS=hello"
    sock.close()


def test_without_systemd_everything_is_a_no_op():
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None
    n.ready()
    n.watchdog()


def test_watchdog_for_another_pid_is_ignored():
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_s is None
    n.watchdog()  # an unreachable socket is not an error

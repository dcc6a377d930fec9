"""The addresses the service may talk to: systemd's ``IPAddressAllow=`` derived from the config.

The unit denies every IP address but these: loopback always, the MQTT broker, a stream
camera's host, the DNS servers when a name must be resolved, and ``service.ip_allow`` (the
web page's clients, a subnet the broker moves within). ``scripts/install-service.sh`` writes
them into a drop-in and into ``EDGE_IP_ALLOW``; ``check-config`` and ``edge run`` then refuse a
config that
needs an address outside the list, so a new broker is a clear error at reload or start
(exit 2) instead of a publisher that silently cannot connect.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from edge.config import Config, uri_target
from edge.errors import ConfigError

IP_ALLOW_ENV = "EDGE_IP_ALLOW"  # set by the service's drop-in: its IPAddressAllow= list
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ANY = "any"


def _hosts(cfg: Config) -> list[tuple[str, str]]:
    """(config key, host name or address) of each remote end the config talks to."""
    found = []
    if cfg.mqtt.enabled:
        found.append(("mqtt.host", cfg.mqtt.host))
    uri = cfg.source.uri
    if uri and uri_target(uri)[0] == "stream":
        host = urlsplit(uri.strip()).hostname
        if host:
            found.append(("source.uri", host))
    return found


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [f.split()[1] for f in lines if f.startswith("nameserver") and len(f.split()) > 1]


def needed(cfg: Config) -> tuple[list[tuple[str, str]], list[str]]:
    """(key, address) pairs the config needs, and the keys whose name did not resolve."""
    pairs: list[tuple[str, str]] = []
    unresolved: list[str] = []
    named = False
    for key, host in _hosts(cfg):
        literal = _literal(host)
        if literal is not None:
            pairs.append((key, str(literal)))
            continue
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            continue  # /etc/hosts, never DNS
        named = True
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            unresolved.append(f"{key} {host}")
            continue
        pairs.extend((key, str(info[4][0]).split("%")[0]) for info in infos)
    if named:
        pairs.extend(("DNS server", ns) for ns in _nameservers())
    pairs.extend(("service.ip_allow", str(net)) for net in cfg.service.ip_allow)
    return [(k, a) for k, a in pairs if not _is_loopback(a)], unresolved


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).is_loopback
    except ValueError:
        return False


def allow_list(cfg: Config) -> tuple[list[str], list[str]]:
    """``IPAddressAllow=`` entries ("localhost" first), and warnings.

    A name that does not resolve now cannot be pinned: then the list is "any", so the
    service works and a later install (once it resolves) narrows it again.
    """
    pairs, unresolved = needed(cfg)
    if unresolved:
        warnings = [
            f"{what} does not resolve now: allowing any address (run install-service.sh "
            "again once it does)"
            for what in unresolved
        ]
        return [ANY], warnings
    entries = ["localhost"]
    for _, address in pairs:
        if address not in entries:
            entries.append(address)
    return entries, []


def outside(cfg: Config, allowed: str) -> list[str]:
    """What the config needs that ``allowed`` (an ``EDGE_IP_ALLOW`` value) does not cover."""
    entries = allowed.split()
    if ANY in entries:
        return []
    nets: list[Network] = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # localhost, link-local and the like: loopback is never needed here
    pairs, _ = needed(cfg)  # a name that does not resolve yet (at boot) is not refused
    problems = []
    for key, address in pairs:
        net = ipaddress.ip_network(address, strict=False)
        if not any(net.version == n.version and net.subnet_of(n) for n in nets):  # type: ignore[arg-type]
            problems.append(f"{key}: {address} is outside the service's IPAddressAllow")
    return problems


def check_env(cfg: Config, where: str, env: dict[str, str] | None = None) -> None:
    """Under the service (``EDGE_IP_ALLOW`` set), refuse a config its sandbox would block."""
    allowed = (os.environ if env is None else env).get(IP_ALLOW_ENV)
    if allowed is None:
        return
    problems = outside(cfg, allowed)
    if problems:
        raise ConfigError(
            f"{where}: " + "; ".join(problems) + " (run scripts/install-service.sh again)"
        )

"""The whole typed configuration tree, its loading, and validation errors with key paths.

Every section forbids unknown keys, so a typo is an error that names the key
instead of a setting silently ignored on a device nobody is watching.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.catalogue import default_models_dir
from edge.errors import ConfigError

DEFAULT_CONFIG_PATHS = (Path("/etc/edge/config.yaml"), Path("config.yaml"))


class Section(BaseModel):
    # No infinities or NaN anywhere: ``.inf`` as a timeout would silently disable it.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Rotation = Literal[0, 90, 180, 270]
UriTarget = Literal["device", "stream", "file"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def uri_target(uri: str) -> tuple[UriTarget, int | str]:
    """What a ``source.uri`` names: a device index or path, a stream URL, or a file.

    Lives with the config so that a mistake only the kind of URI reveals (looping a
    camera) is refused by ``check-config``, not found at run time.
    """
    text = uri.strip()
    if text.isdigit():
        return "device", int(text)
    if _URL.match(text):
        if text.lower().startswith("file://"):
            return "file", text[len("file://") :]
        return "stream", text
    if text.startswith("/dev/"):
        return "device", text
    return "file", text


class SourceConfig(Section):
    """Where frames come from."""

    # none (still mode): no camera, photos come only from still.watch_dir
    kind: Literal["auto", "picamera2", "opencv", "command", "none"] = "auto"
    # opencv: device index ("0"), /dev/videoN, rtsp://, http(s):// MJPEG, or a file path.
    uri: str | None = Field(None, validate_default=True)
    loop: bool = False  # files only: start again at the end
    realtime: bool = True  # files only: pace reading to the file's frame rate
    width: int = Field(640, gt=0)
    height: int = Field(480, gt=0)
    fps: float = Field(15.0, gt=0)  # capture rate asked of the camera
    rotate: Rotation = 0
    hflip: bool = False
    vflip: bool = False
    frame_timeout_s: float = Field(5.0, gt=0)  # no frame for this long: the source is stalled
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    # kind=command (still mode): a program that writes one photo to {path}.
    command: str | None = None
    command_timeout_s: float = Field(20.0, gt=0)

    @field_validator("uri")
    @classmethod
    def _uri_fits_kind(cls, v: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if v is not None and not v.strip():
            raise ValueError("empty (leave it out for kind 'auto')")
        if kind == "opencv" and v is None:
            raise ValueError(
                "kind 'opencv' needs a device (0, /dev/video0), a stream URL "
                "(rtsp://, http://) or a video file"
            )
        if kind == "picamera2" and v is not None and not v.strip().isdigit():
            raise ValueError(f"for kind picamera2 give a camera number (0, 1), not {v!r}")
        return v

    @field_validator("loop")
    @classmethod
    def _only_files_loop(cls, v: bool, info: ValidationInfo) -> bool:
        if not v or "uri" not in info.data or info.data.get("kind") == "command":
            return v  # a bad uri is reported on its own
        uri = info.data["uri"]
        target = uri_target(uri)[0] if uri is not None else "device"
        if target != "file":  # no URI in the message: a stream URL may carry a password
            what = "a stream URL" if target == "stream" else "a camera"
            raise ValueError(f"only a video file can loop, not {what}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if self.kind == "command" and (not self.command or "{path}" not in self.command):
            raise ValueError("kind 'command' needs 'command' containing the placeholder {path}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self


class ModelConfig(Section):
    """A model: a catalogue name or a path to a .tflite file (or a Custom Vision export)."""

    name: str | None = None
    path: str | None = None
    labels: str | None = None
    sha256: str | None = None
    # One interpreter thread: a model paced at a few steps a second has time to spare, and a
    # second thread, whose worker spins between layers, cost the daemon about 1.6 ms of CPU
    # per step (edge bench --live: 7.9-8.1 against 9.1-10.1 ms) to save a fraction of one.
    threads: int = Field(1, ge=1, le=64)
    fps: float = Field(5.0, gt=0, le=120)  # model steps per second (stream models)
    top_k: int = Field(5, ge=1, le=100)
    horizon_s: float = Field(4.0, ge=0)  # stream models: memory horizon, 0 = unbounded
    reset_gap_s: float = Field(2.0, gt=0)  # stream models: reset state after a gap this long
    threshold: float | None = Field(None, ge=0, le=1)  # still models: "none of these" below it
    # still models: override what an export declares
    channel_order: Literal["RGB", "BGR"] | None = None
    value_range: tuple[float, float] | None = None

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("must be 64 hexadecimal digits")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_of(self) -> ModelConfig:
        if bool(self.name) == bool(self.path):
            raise ValueError("give exactly one of 'name' (catalogue) or 'path'")
        return self

    @property
    def spec(self) -> str:
        return self.name or self.path or ""


class SmootherConfig(Section):
    """EMA over probabilities, then hysteresis on the label."""

    tau_s: float = Field(1.0, gt=0)
    enter: float = Field(0.4, ge=0, le=1)
    exit: float = Field(0.3, ge=0, le=1)
    exit_hold_s: float = Field(2.5, ge=0)  # below exit this long: the label becomes none
    margin: float = Field(0.1, ge=0, le=1)
    consecutive: int = Field(3, ge=1)
    min_dwell_s: float = Field(2.0, ge=0)
    top_k: int = Field(5, ge=1, le=50)

    @model_validator(mode="after")
    def _order(self) -> SmootherConfig:
        if self.exit > self.enter:
            raise ValueError("exit threshold must not exceed enter threshold")
        return self


class TlsConfig(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip hostname check (self-signed broker on a LAN)

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(Section):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = None  # default: edge-<device_id>
    topic_prefix: str = "edge"
    # auto: MQTT 5, or 3.1.1 when the broker refuses 5 (NATS, older appliance brokers).
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    qos: Literal[0, 1, 2] = 1  # only 1 is accepted, see _one
    keepalive_s: int = Field(30, ge=5, le=3600)
    # Outbox messages on the wire unacknowledged at once (on MQTT 5 also under the broker's
    # Receive Maximum; 3.1.1 has none, so set this to what the broker allows).
    max_inflight: int = Field(20, ge=1, le=65535)
    # How long the broker keeps the session (command subscription and commands queued for
    # the device) after a disconnect; 0: no persistent session. MQTT 3.1.1 has no expiry:
    # any value above 0 keeps the session until the broker's own limit.
    session_expiry_s: int = Field(3600, ge=0, le=4_294_967_295)
    # Commands taken per second (token bucket, bursts up to command_burst); the rest are
    # dropped unanswered and counted in stats.
    command_rate_per_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    command_burst: int = Field(20, ge=1, le=10_000)
    username: str | None = None
    # The password is never written in config: a file, or an environment variable.
    password_file: Path | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    heartbeat_s: float = Field(60.0, gt=0)  # state re-published at least this often
    stats_interval_s: float = Field(30.0, gt=0)
    predictions_max_hz: float = Field(2.0, ge=0)  # 0 disables the predictions topic
    outbox_max_messages: int = Field(100_000, ge=100)
    max_command_bytes: int = Field(4096, ge=256, le=1_048_576)
    discovery: bool = True
    discovery_prefix: str = "homeassistant"

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a non-empty topic without wildcards or leading/trailing /")
        return v

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: object) -> object:
        # YAML reads `protocol: 5` as a number.
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("qos")
    @classmethod
    def _one(cls, v: int) -> int:
        if v != 1:
            raise ValueError(
                "must be 1: state, events and results are sent at QoS 1 and again from the"
                " outbox until acknowledged (subscribers de-duplicate on seq); QoS 2 cannot"
                " make that exactly-once across reconnects"
            )
        return v

    @model_validator(mode="after")
    def _reconnect(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self

    def password(self) -> str | None:
        """Read the password at connect time so a rotated secret needs no config change."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"mqtt.password_env: environment variable {self.password_env} is not set"
                )
            return value
        if self.password_file:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror}"
                ) from None
        return None


class StillConfig(Section):
    """Still mode: when to take a photo and what to keep."""

    interval_s: float = Field(0.0, ge=0)  # 0 = no schedule, only commands and the watched folder
    watch_dir: Path | None = None
    watch_poll_s: float = Field(1.0, gt=0)
    keep_images: Literal["all", "none", "days"] = "all"
    keep_days: float = Field(30.0, gt=0)
    # Photos larger than these are refused before decoding (history row, event, rejected/).
    max_image_mb: float = Field(50.0, gt=0)
    max_image_megapixels: float = Field(50.0, gt=0)


class TeachConfig(Section):
    """Taught classes: examples kept on this device, matched on the model's embedding."""

    store: Path | None = None  # default: state_dir/teach.sqlite
    learner: Literal["ncm", "knn", "linear"] = "ncm"
    k: int = Field(3, ge=1, le=50)  # knn: neighbours per class
    threshold: float | None = Field(None, ge=-1, le=1)  # None: calibrated leave-one-out
    # taught: only taught classes are published; taught_or_base: the taught class when one
    # is recognised, else the model's own label
    publish: Literal["taught", "taught_or_base"] = "taught_or_base"


class ServiceConfig(Section):
    """How the systemd service is sandboxed (applied by scripts/install-service.sh)."""

    # Addresses or subnets the service may talk to besides loopback, the broker and a
    # stream camera: the web page's clients, a subnet a DHCP broker moves within.
    ip_allow: list[IPvAnyNetwork] = Field(default_factory=list)


class WebConfig(Section):
    """The live page, its JSON API and /metrics (needs the ``web`` extra: aiohttp)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # beyond loopback a token is required
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port (tests)
    token_file: Path | None = None  # a file holding the access token (not the token itself)

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> WebConfig:
        if self.enabled and self.token_file is None and not _is_loopback(self.host):
            raise ValueError(
                f"web.host {self.host} is reachable from other machines: set web.token_file"
            )
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsConfig(Section):
    """Prometheus metrics: on the web server's /metrics, or as a node_exporter textfile."""

    textfile: Path | None = None  # written atomically every interval_s
    interval_s: float = Field(15.0, gt=0)


class Config(Section):
    device_id: str = Field("edge-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    mode: Literal["video", "still"] = "video"
    source: SourceConfig = SourceConfig()
    model: ModelConfig = ModelConfig(name="movinet-a0-stream-int8")
    # Still mode can run several models on each photo; if empty, `model` is used.
    still_models: list[ModelConfig] = Field(default_factory=list)
    smoother: SmootherConfig = SmootherConfig()
    mqtt: MqttConfig = MqttConfig()
    still: StillConfig = StillConfig()
    teach: TeachConfig = TeachConfig()
    service: ServiceConfig = ServiceConfig()
    web: WebConfig = WebConfig()
    metrics: MetricsConfig = MetricsConfig()
    state_dir: Path = Path("/var/lib/edge")
    models_dir: Path | None = None  # default: $EDGE_MODELS_DIR or ~/.local/share/edge/models
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _mode_fits_source(self) -> Config:
        kind = self.source.kind
        if self.mode == "video" and kind == "command":
            raise ValueError(
                "source.kind 'command' takes photos: it works in mode 'still', not 'video'"
            )
        if kind == "none":
            if self.mode == "video":
                raise ValueError("source.kind 'none': video mode needs a camera or stream")
            if not self.still.watch_dir:
                raise ValueError(
                    "source.kind 'none' takes no photos: set still.watch_dir for the images"
                )
            if self.still.interval_s > 0:
                raise ValueError(
                    "still.interval_s: a photo schedule needs a camera, and source.kind is 'none'"
                )
        return self

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or default_models_dir()

    @property
    def teach_store(self) -> Path:
        return self.teach.store or self.state_dir / "teach.sqlite"

    @property
    def still_model_list(self) -> list[ModelConfig]:
        return self.still_models or [self.model]


def _format_errors(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return f"{where}: " + "; ".join(parts)


def parse_config(data: object, where: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping of keys to values")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base`` (command-line options over the file)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error, not "last wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_config_file(path: Path) -> dict:
    """The file's YAML mapping, unvalidated; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys to values")
    return data


def find_config() -> Path | None:
    return next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Load and validate a YAML config (default: the first of DEFAULT_CONFIG_PATHS found).

    ``overrides`` (from command-line options) are merged in before validation,
    so they are checked exactly like keys in the file.
    """
    if path is None:
        path = find_config()
    data = read_config_file(Path(path)) if path is not None else {}
    if overrides:
        data = merge(data, overrides)
    return parse_config(data, str(path) if path is not None else "config")

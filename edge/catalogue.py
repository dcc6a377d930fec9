"""The model catalogue: names the daemon and CLI know, where each model lives, how it is fetched.

Installed models live in ``<models_dir>/<name>/`` next to an ``installed.json`` marker that
records what was installed from where, with each file's sha256. Fetching never leaves a
half-written model: files are staged in a temporary directory inside ``models_dir``, verified,
then moved into place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import yaml

import edge
from edge.errors import ConfigError, DownloadError, ModelError

DEFAULT_STREAM_MODEL = "movinet-a0-stream-int8"
DEFAULT_IMAGE_MODEL = "mobilenet-v2-quant"

CATALOGUE_ENV = "EDGE_CATALOGUE"
MODELS_DIR_ENV = "EDGE_MODELS_DIR"
INSTALLED_MARKER = "installed.json"

ROLES = ("model", "labels", "manifest")
KINDS = ("stream", "image")
_CHUNK = 1 << 16
_TIMEOUT_S = 60.0
# libyaml's parser where PyYAML was built with it (PyPI's wheels, Debian's python3-yaml).
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class CatalogueFile:
    role: str  # model | labels | manifest
    filename: str  # name inside <models_dir>/<entry name>/
    url: str | None
    sha256: str | None  # None: unknown, trusted on first fetch
    size: int | None
    mirror: str | None  # path relative to a mirror directory or mirror base URL


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    kind: Literal["stream", "image"]
    description: str
    files: tuple[CatalogueFile, ...]
    label_count: int | None = None
    input_size: tuple[int, int] | None = None  # (height, width)
    licence: str = ""
    notes: str = ""
    test_only: bool = False

    @property
    def model_file(self) -> CatalogueFile:
        return next(f for f in self.files if f.role == "model")

    @property
    def labels_file(self) -> CatalogueFile | None:
        return next((f for f in self.files if f.role == "labels"), None)

    @property
    def size(self) -> int | None:
        """Total download size, when every file's size is known."""
        sizes = [f.size for f in self.files if f.size is not None]
        return sum(sizes) if len(sizes) == len(self.files) else None


# ------------------------------------------------------------------------------ locations


def default_models_dir() -> Path:
    """Where models live unless config says otherwise: $EDGE_MODELS_DIR or the user data dir."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edge" / "models"


def catalogue_path() -> Path:
    """$EDGE_CATALOGUE, else models/catalogue.yaml of the source tree edge runs from, else the
    copy a wheel installs (``pip install .`` puts it under the environment's share/edge)."""
    env = os.environ.get(CATALOGUE_ENV)
    if env:
        return Path(env).expanduser()
    source = Path(edge.__file__).resolve().parent.parent / "models" / "catalogue.yaml"
    installed = Path(sys.prefix) / "share" / "edge" / "models" / "catalogue.yaml"
    return installed if not source.is_file() and installed.is_file() else source


# ------------------------------------------------------------------------------ loading

_cache: dict[tuple[str, int], dict[str, CatalogueEntry]] = {}


def load_catalogue(path: str | Path | None = None) -> dict[str, CatalogueEntry]:
    """Parse and validate the catalogue; a malformed one is a ConfigError naming the key."""
    path = Path(path) if path is not None else catalogue_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise ConfigError(f"{path}: model catalogue not found") from None
    key = (str(path), stamp)
    if key not in _cache:
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read model catalogue: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}: invalid YAML{at}") from None
        _cache.clear()
        _cache[key] = _parse(data, str(path))
    return _cache[key]


def _parse(data: Any, where: str) -> dict[str, CatalogueEntry]:
    def fail(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {msg}")

    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise fail("models", "must be a list of model entries")
    entries: dict[str, CatalogueEntry] = {}
    for i, raw in enumerate(data["models"]):
        at = f"models[{i}]"
        if not isinstance(raw, dict):
            raise fail(at, "must be a mapping")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise fail(f"{at}.name", "must be lower-case letters, digits, '.', '_' or '-'")
        if name in entries:
            raise fail(f"{at}.name", f"duplicate name {name!r}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise fail(f"{at}.kind", f"must be one of {', '.join(KINDS)}")
        files_raw = raw.get("files")
        if not isinstance(files_raw, list) or not files_raw:
            raise fail(f"{at}.files", "must be a non-empty list")
        files = tuple(_parse_file(f, f"{at}.files[{j}]", fail) for j, f in enumerate(files_raw))
        roles = [f.role for f in files]
        if roles.count("model") != 1 or roles.count("labels") > 1:
            raise fail(f"{at}.files", "needs exactly one 'model' file and at most one 'labels'")
        if len({f.filename for f in files}) != len(files):
            raise fail(f"{at}.files", "file names must differ")
        size = raw.get("input_size")
        if size is not None and not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)
        ):
            raise fail(f"{at}.input_size", "must be [height, width]")
        count = raw.get("label_count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise fail(f"{at}.label_count", "must be a positive integer")
        entries[name] = CatalogueEntry(
            name=name,
            kind="stream" if kind == "stream" else "image",
            description=str(raw.get("description") or ""),
            files=files,
            label_count=count,
            input_size=(size[0], size[1]) if size else None,
            licence=str(raw.get("licence") or ""),
            notes=str(raw.get("notes") or ""),
            test_only=bool(raw.get("test_only", False)),
        )
    return entries


def _parse_file(raw: Any, at: str, fail) -> CatalogueFile:
    if not isinstance(raw, dict):
        raise fail(at, "must be a mapping")
    role = raw.get("role")
    if role not in ROLES:
        raise fail(f"{at}.role", f"must be one of {', '.join(ROLES)}")
    filename = raw.get("filename")
    # A plain file name: a catalogue must never be able to write outside the model's directory.
    if (
        not isinstance(filename, str)
        or not filename
        or filename != Path(filename).name
        or filename in (".", "..", INSTALLED_MARKER)
        or filename.startswith(".")
    ):
        raise fail(f"{at}.filename", "must be a plain file name")
    url = raw.get("url")
    if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise fail(f"{at}.url", "must be an http(s) URL or null")
    sha = raw.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA_RE.fullmatch(sha.lower())):
        raise fail(f"{at}.sha256", "must be 64 hexadecimal digits or null")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise fail(f"{at}.size", "must be a byte count or null")
    mirror = raw.get("mirror")
    if mirror is not None and (
        not isinstance(mirror, str)
        or mirror.startswith("/")
        or ".." in Path(mirror).parts
        or not mirror
    ):
        raise fail(f"{at}.mirror", "must be a relative path without '..'")
    return CatalogueFile(
        role=role,
        filename=filename,
        url=url,
        sha256=sha.lower() if sha else None,
        size=size,
        mirror=mirror,
    )


def get_entry(name: str, catalogue: dict[str, CatalogueEntry] | None = None) -> CatalogueEntry:
    catalogue = load_catalogue() if catalogue is None else catalogue
    entry = catalogue.get(name)
    if entry is None:
        raise unknown_model(name, list(catalogue))
    return entry


def unknown_model(name: str, known: list[str]) -> ModelError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelError(f"unknown model {name!r}{hint} (see 'edge models list')")


# ------------------------------------------------------------------------------ installed state


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The ``installed.json`` of a model directory, or None if absent or unreadable."""
    try:
        data = json.loads((directory / INSTALLED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def file_records(marker: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    files = (marker or {}).get("files")
    if not isinstance(files, list):
        return {}
    return {r["filename"]: r for r in files if isinstance(r, dict) and "filename" in r}


def is_installed(entry: CatalogueEntry, models_dir: Path) -> bool:
    """Installed by ``fetch`` and unchanged since (size, mtime and recorded digest agree).

    Cheap on purpose: it does not re-hash the files, so ``edge models fetch`` of an installed
    model returns at once.
    """
    directory = Path(models_dir) / entry.name
    marker = read_marker(directory)
    if not marker or marker.get("name") != entry.name:
        return False
    records = file_records(marker)
    for f in entry.files:
        rec = records.get(f.filename)
        try:
            st = (directory / f.filename).stat()
        except OSError:
            return False
        if rec is None or rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
            return False
        if f.sha256 and rec.get("sha256") != f.sha256:
            return False
    return True


def installed_names(models_dir: Path) -> list[str]:
    """Every model directory under ``models_dir`` that carries an install marker."""
    try:
        children = sorted(p for p in Path(models_dir).iterdir() if p.is_dir())
    except OSError:
        return []
    return [p.name for p in children if not p.name.startswith(".") and read_marker(p)]


def mirror_has(entry: CatalogueEntry, mirror: Path) -> bool:
    return all(f.mirror and (Path(mirror) / f.mirror).is_file() for f in entry.files)


# ------------------------------------------------------------------------------ fetching


def fetch(
    name: str,
    models_dir: Path,
    source: str | None = None,
    progress: bool = True,
    *,
    force: bool = False,
) -> Path:
    """Install a catalogue model and return its model file's path.

    ``source``: None downloads each file from its catalogue URL; a directory copies from that
    mirror; an ``http(s)://`` URL is a mirror base URL. Nothing is changed in ``models_dir``
    unless every file arrived whole and matched its known sha256.
    """
    entry = get_entry(name)
    models_dir = Path(models_dir)
    dest = models_dir / entry.name
    if not force and is_installed(entry, models_dir):
        return dest / entry.model_file.filename
    origin = _source_kind(source)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".fetch-{entry.name}-", dir=models_dir))
    except OSError as exc:
        raise ModelError(f"{models_dir}: cannot write models directory: {exc.strerror}") from None
    created = not dest.exists()
    try:
        records = []
        for f in entry.files:
            target = stage / f.filename
            where, digest = _fetch_file(entry, f, source, origin, target, progress)
            size = target.stat().st_size
            if f.sha256 and digest != f.sha256:
                raise ModelError(
                    f"{entry.name}: {f.filename}: sha256 mismatch: expected {f.sha256} "
                    f"got {digest} (from {where})"
                )
            if f.size is not None and size != f.size:
                raise ModelError(
                    f"{entry.name}: {f.filename}: size mismatch: expected {f.size} bytes "
                    f"got {size} (from {where})"
                )
            if f.sha256 is None:
                print(
                    f"{entry.name}: {f.filename}: sha256 {digest} "
                    "(not in the catalogue: recorded, trusted on first use)",
                    file=sys.stderr,
                )
            records.append(
                {
                    "role": f.role,
                    "filename": f.filename,
                    "sha256": digest,
                    "size": size,
                    "from": where,
                }
            )
        _install(stage, dest, entry, records, source)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest / entry.model_file.filename


def _source_kind(source: str | None) -> str:
    if source is None:
        return "url"
    if source.startswith(("http://", "https://")):
        return "mirror-url"
    if Path(source).expanduser().is_dir():
        return "mirror-dir"
    raise ModelError(f"--from {source}: not a directory or an http(s):// mirror URL")


def _fetch_file(
    entry: CatalogueEntry,
    f: CatalogueFile,
    source: str | None,
    origin: str,
    target: Path,
    progress: bool,
) -> tuple[str, str]:
    """Write one file to ``target`` (fsynced); return where it came from and its sha256."""
    if origin == "mirror-dir":
        assert source is not None
        src = Path(source).expanduser() / (f.mirror or f.filename)
        try:
            with src.open("rb") as fh, target.open("wb") as out:
                _, digest = _copy(fh, out, src.stat().st_size, f.filename, progress)
        except FileNotFoundError:
            raise ModelError(
                f"{entry.name}: {f.mirror or f.filename} is not in the mirror {source}"
            ) from None
        except OSError as exc:
            raise ModelError(f"{entry.name}: cannot copy {src}: {exc.strerror}") from None
        return str(src.resolve()), digest
    if origin == "mirror-url":
        assert source is not None
        from urllib.parse import quote

        url = source.rstrip("/") + "/" + quote(f.mirror or f.filename)
    else:
        if not f.url:
            raise ModelError(
                f"{entry.name}: {f.filename} has no download address; "
                "fetch it from a mirror with --from DIR_OR_URL"
            )
        url = f.url
    return url, _download(url, target, f"{entry.name}: {f.filename}", progress)


def _download(url: str, target: Path, what: str, progress: bool) -> str:
    import http.client  # only a download needs the HTTP stack: kept out of start-up
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": f"edge/{edge.__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise ModelError(f"{what}: download failed: HTTP {exc.code} {exc.reason} ({url})") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{what}: download failed: {exc.reason} ({url})") from None
    except OSError as exc:
        raise DownloadError(f"{what}: download failed: {exc} ({url})") from None
    except (ValueError, http.client.HTTPException) as exc:
        raise ModelError(f"{what}: download failed: {exc} ({url})") from None
    with response:
        header = response.headers.get("Content-Length")
        length = int(header) if header and header.isdigit() else None
        try:
            with target.open("wb") as out:
                got, digest = _copy(response, out, length, target.name, progress)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            raise ModelError(f"{what}: truncated download: {exc} ({url})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ModelError(f"{what}: download failed: {exc} ({url})") from None
    if length is not None and got != length:
        raise ModelError(f"{what}: truncated download: got {got} of {length} bytes ({url})")
    return digest


def _copy(
    src: IO[bytes], out: IO[bytes], total: int | None, label: str, progress: bool
) -> tuple[int, str]:
    """Copy in chunks, hashing on the way; returns (bytes copied, sha256)."""
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False
        )
    got = 0
    digest = hashlib.sha256()
    try:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            got += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    finally:
        if bar is not None:
            bar.close()
    return got, digest.hexdigest()


def _source_label(source: str | None) -> str:
    if source is None:
        return "catalogue"
    if source.startswith(("http://", "https://")):
        return source
    return str(Path(source).expanduser().resolve())


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_marker(directory: Path, marker: dict[str, Any]) -> None:
    """Write ``installed.json`` whole or not at all (a crash reads as not installed)."""
    tmp = directory / f".{INSTALLED_MARKER}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / INSTALLED_MARKER)


def _install(
    stage: Path,
    dest: Path,
    entry: CatalogueEntry,
    records: list[dict[str, Any]],
    source: str | None,
) -> None:
    """Move verified files into place; the marker goes last so a crash reads as not installed."""
    dest.mkdir(exist_ok=True)
    (dest / INSTALLED_MARKER).unlink(missing_ok=True)
    for rec in records:
        os.replace(stage / rec["filename"], dest / rec["filename"])
        rec["mtime_ns"] = (dest / rec["filename"]).stat().st_mtime_ns
    model = next(r for r in records if r["role"] == "model")
    marker = {
        "name": entry.name,
        "kind": entry.kind,
        "sha256": model["sha256"],
        "source": _source_label(source),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": records,
    }
    write_marker(dest, marker)
    fsync_dir(dest)
    fsync_dir(dest.parent)

"""The model catalogue: its contents against the mirror, resolving, fetching, refusing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge import catalogue as cat
from edge import resolve
from edge.errors import ConfigError, ModelError
from edge.labels import load_labels
from tests.support.localhttp import QuietHandler, serve

MIRRORED = [
    "movinet-a0-stream-int8",
    "mobilenet-v2-quant",
    "customvision-fruits",
    "movinet-custom-cattle-int8",
    "movinet-custom-cattle-dynamic",
]


# ------------------------------------------------------------------------------ local servers


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything but the local test servers goes to a dead proxy: no test reaches the internet."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # urlopen builds its shared opener once, with the proxies of that moment: the one built
    # here must not outlive the test and send later tests' requests to the dead proxy.
    monkeypatch.setattr(urllib.request, "_opener", None)


GOOD = b"TFL3-good-" * 300
LABELS = b"one\ntwo\n"


class _Odd(QuietHandler):
    """/good, /labels: whole files; /truncated: promises more bytes than it sends."""

    def do_GET(self) -> None:
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD) + 5000))
            self.end_headers()
            self.wfile.write(GOOD[:1000])
            self.wfile.flush()
            self.close_connection = True
            return
        body = {"/good": GOOD, "/labels": LABELS}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def odd_url() -> Iterator[str]:
    yield from serve(_Odd)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tmp_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a catalogue of one entry (files given) and point $EDGE_CATALOGUE at it."""

    def write(files: list[dict], name: str = "toy", kind: str = "image") -> Path:
        path = tmp_path / f"catalogue-{len(list(tmp_path.glob('catalogue-*')))}.yaml"
        data = {"version": 1, "models": [{"name": name, "kind": kind, "files": files}]}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        monkeypatch.setenv(cat.CATALOGUE_ENV, str(path))
        return path

    return write


def _contents(directory: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))
        if directory.exists()
        else []
    )


# ------------------------------------------------------------------------------ catalogue content


def _manifest_digests(mirror: Path) -> dict[str, tuple[int, str]]:
    text = (mirror / "MANIFEST.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) \| ([0-9a-f]{64}) \|$", text, re.M)
    return {path: (int(size), sha) for path, size, sha in rows}


def test_catalogue_digests_match_the_mirror_manifest(mirror) -> None:
    manifest = _manifest_digests(mirror)
    assert len(manifest) >= 10
    seen = set()
    for entry in cat.load_catalogue().values():
        for f in entry.files:
            if f.mirror in manifest:
                seen.add(f.mirror)
                assert (f.size, f.sha256) == manifest[f.mirror], (entry.name, f.filename)
            else:
                assert f.sha256 is None, (entry.name, f.filename)
    assert seen == set(manifest)  # every mirrored file is in the catalogue


def test_defaults_and_official_addresses() -> None:
    entries = cat.load_catalogue()
    assert entries[cat.DEFAULT_STREAM_MODEL].kind == "stream"
    assert entries[cat.DEFAULT_IMAGE_MODEL].kind == "image"
    for variant in ("a0", "a1", "a2"):
        for precision, tag in (("int8", "int8"), ("fp16", "float16")):
            entry = entries[f"movinet-{variant}-stream-{precision}"]
            assert entry.kind == "stream" and entry.label_count == 600
            assert entry.model_file.url == (
                f"https://tfhub.dev/tensorflow/lite-model/movinet/{variant}/stream/kinetics-600/"
                f"classification/tflite/{tag}/1?lite-format=tflite"
            )
            assert entry.input_size == ((224, 224) if variant == "a2" else (172, 172))
            assert entry.labels_file is not None
            assert entry.labels_file.filename == "kinetics600_label_map.txt"
    for entry in entries.values():
        if entry.test_only:
            assert all(f.url is None for f in entry.files)
            assert "licence" in entry.licence or "no" in entry.licence.lower()
        else:
            assert all(f.url and f.url.startswith("https://") for f in entry.files), entry.name
            assert entry.licence


def test_label_counts_match_mirrored_label_files(
    k600_labels, mobilenet, cv_fruits, berlin_int8, mirror
) -> None:
    for entry in cat.load_catalogue().values():
        if entry.labels_file and (mirror / str(entry.labels_file.mirror)).exists():
            labels = load_labels(mirror / str(entry.labels_file.mirror))
            assert len(labels) == entry.label_count, entry.name


def test_malformed_catalogue_names_the_key(tmp_catalogue) -> None:
    path = tmp_catalogue([{"role": "model", "filename": "../escape.tflite", "url": None}])
    with pytest.raises(ConfigError) as err:
        cat.load_catalogue()
    assert str(path) in str(err.value)
    assert "models[0].files[0].filename" in str(err.value)
    tmp_catalogue([{"role": "labels", "filename": "l.txt"}])
    with pytest.raises(ConfigError, match=r"models\[0\]\.files.*exactly one 'model'"):
        cat.load_catalogue()


def test_default_models_dir_follows_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(cat.MODELS_DIR_ENV, str(tmp_path / "m"))
    assert cat.default_models_dir() == tmp_path / "m"
    monkeypatch.delenv(cat.MODELS_DIR_ENV)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cat.default_models_dir() == tmp_path / ".local" / "share" / "edge" / "models"


# ------------------------------------------------------------------------------ fetch


def test_fetch_from_mirror_directory_installs_verified_files(
    a0, k600_labels, mirror, tmp_path
) -> None:
    models = tmp_path / "models"
    path = cat.fetch("movinet-a0-stream-int8", models, str(mirror), progress=False)
    entry = cat.load_catalogue()["movinet-a0-stream-int8"]
    assert path == models / entry.name / "movinet_a0_stream_int8.tflite"
    assert path.read_bytes() == a0.read_bytes()
    marker = json.loads((models / entry.name / "installed.json").read_text())
    assert marker["name"] == entry.name
    assert marker["sha256"] == entry.model_file.sha256
    assert {f["filename"] for f in marker["files"]} == {f.filename for f in entry.files}
    assert cat.is_installed(entry, models)
    # Nothing but the installed model: no staging directory or temp file left over.
    assert _contents(models) == sorted(
        [entry.name]
        + [
            f"{entry.name}/{n}"
            for n in (
                "movinet_a0_stream_int8.tflite",
                "kinetics600_label_map.txt",
                "installed.json",
            )
        ]
    )
    resolved = resolve.resolve_model(entry.name, models)
    assert resolved.path == path and resolved.kind == "stream"
    assert resolved.labels == models / entry.name / "kinetics600_label_map.txt"
    assert resolved.sha256 == entry.model_file.sha256 and resolved.entry == entry


def test_installed_model_is_skipped_and_a_changed_one_fetched_again(
    mobilenet, mirror, tmp_path
) -> None:
    models, empty_mirror = tmp_path / "models", tmp_path / "empty"
    empty_mirror.mkdir()
    path = cat.fetch("mobilenet-v2-quant", models, str(mirror), progress=False)
    # Installed and unchanged: the (empty) mirror is never read.
    assert cat.fetch("mobilenet-v2-quant", models, str(empty_mirror), progress=False) == path
    path.write_bytes(path.read_bytes()[:-10])  # damaged on disk
    assert not cat.is_installed(cat.get_entry("mobilenet-v2-quant"), models)
    with pytest.raises(ModelError, match="not in the mirror"):
        cat.fetch("mobilenet-v2-quant", models, str(empty_mirror), progress=False)
    assert path.stat().st_size == mobilenet.stat().st_size - 10  # old files untouched on failure
    cat.fetch("mobilenet-v2-quant", models, str(mirror), progress=False)
    assert resolve.resolve_request("mobilenet-v2-quant", models, _sha(mobilenet.read_bytes()))


def test_fetch_over_http_from_a_mirror_url(cv_fruits, tmp_path, mirror_url) -> None:
    models = tmp_path / "models"
    cat.fetch("customvision-fruits", models, mirror_url, progress=False)
    for name in ("model.tflite", "labels.txt", "cvexport.manifest"):
        assert (models / "customvision-fruits" / name).read_bytes() == (
            cv_fruits / name
        ).read_bytes()
    marker = cat.read_marker(models / "customvision-fruits")
    assert marker and marker["source"] == mirror_url


def test_sha256_mismatch_leaves_nothing(tmp_path, odd_url, tmp_catalogue) -> None:
    tmp_catalogue(
        [{"role": "model", "filename": "m.tflite", "url": odd_url + "good", "sha256": "0" * 64}]
    )
    models = tmp_path / "models"
    with pytest.raises(ModelError) as err:
        cat.fetch("toy", models, progress=False)
    msg = str(err.value)
    assert "m.tflite" in msg and "sha256 mismatch" in msg and _sha(GOOD) in msg
    assert _contents(models) == []


def test_truncated_download_leaves_nothing(tmp_path, odd_url, tmp_catalogue) -> None:
    tmp_catalogue([{"role": "model", "filename": "m.tflite", "url": odd_url + "truncated"}])
    models = tmp_path / "models"
    with pytest.raises(ModelError) as err:
        cat.fetch("toy", models, progress=False)
    assert "m.tflite" in str(err.value) and "truncated" in str(err.value)
    assert _contents(models) == []


def test_failure_on_a_later_file_leaves_nothing(tmp_path, odd_url, tmp_catalogue) -> None:
    tmp_catalogue(
        [
            {"role": "model", "filename": "m.tflite", "url": odd_url + "good"},
            {"role": "labels", "filename": "labels.txt", "url": odd_url + "missing"},
        ]
    )
    models = tmp_path / "models"
    with pytest.raises(ModelError, match=r"labels\.txt: download failed: HTTP 404"):
        cat.fetch("toy", models, progress=False)
    assert _contents(models) == []


def test_unknown_digest_is_recorded_on_first_use(tmp_path, odd_url, tmp_catalogue, capsys) -> None:
    tmp_catalogue(
        [
            {"role": "model", "filename": "m.tflite", "url": odd_url + "good"},
            {
                "role": "labels",
                "filename": "labels.txt",
                "url": odd_url + "labels",
                "sha256": _sha(LABELS),
            },
        ]
    )
    models = tmp_path / "models"
    path = cat.fetch("toy", models, progress=False)
    assert path.read_bytes() == GOOD
    assert _sha(GOOD) in capsys.readouterr().err
    marker = cat.read_marker(models / "toy")
    assert marker and marker["sha256"] == _sha(GOOD)
    resolved = resolve.resolve_model("toy", models)
    assert resolved.sha256 == _sha(GOOD) and resolved.labels == models / "toy" / "labels.txt"


def test_forced_refetch_that_fails_keeps_the_old_install(tmp_path, odd_url, tmp_catalogue) -> None:
    tmp_catalogue([{"role": "model", "filename": "m.tflite", "url": odd_url + "good"}])
    models = tmp_path / "models"
    path = cat.fetch("toy", models, progress=False)
    tmp_catalogue([{"role": "model", "filename": "m.tflite", "url": odd_url + "truncated"}])
    with pytest.raises(ModelError, match="truncated"):
        cat.fetch("toy", models, progress=False, force=True)
    assert path.read_bytes() == GOOD
    assert _contents(models) == ["toy", "toy/installed.json", "toy/m.tflite"]


def test_entry_without_address_needs_a_mirror(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"no download address.*--from"):
        cat.fetch("movinet-custom-cattle-int8", tmp_path / "models", progress=False)
    assert _contents(tmp_path / "models") == []


def test_unknown_name_suggests_close_matches(tmp_path) -> None:
    with pytest.raises(
        ModelError, match=r"unknown model 'movinet-a0-stream-in8'.*movinet-a0-stream-int8"
    ):
        cat.fetch("movinet-a0-stream-in8", tmp_path, progress=False)
    with pytest.raises(ModelError, match="did you mean mobilenet-v2-quant"):
        resolve.resolve_model("mobilenet-v2-quan", tmp_path)


# ------------------------------------------------------------------------------ resolve_model


def test_resolve_not_installed_tells_how_to_fetch(tmp_path) -> None:
    with pytest.raises(ModelError) as err:
        resolve.resolve_model("movinet-a1-stream-int8", tmp_path)
    assert str(err.value) == (
        f"model movinet-a1-stream-int8 is not installed in {tmp_path}: "
        "run 'edge models fetch movinet-a1-stream-int8'"
    )


def test_resolve_paths_and_directories(
    a0, k600_labels, cv_fruits, berlin_int8, mobilenet, tmp_path
) -> None:
    stream = resolve.resolve_model(str(a0), tmp_path)
    assert (stream.path, stream.labels, stream.kind, stream.entry) == (
        a0,
        k600_labels,
        "auto",
        None,
    )
    image = resolve.resolve_model(str(mobilenet), tmp_path)
    assert image.labels == mobilenet.parent / "imagenet_labels.txt"
    fruits = resolve.resolve_model(str(cv_fruits), tmp_path)
    assert fruits.path == cv_fruits / "model.tflite"
    assert fruits.labels == cv_fruits / "labels.txt" and fruits.kind == "image"
    cattle = resolve.resolve_model(str(berlin_int8), tmp_path)
    assert cattle.labels == berlin_int8.parent / "label_map.txt"
    with pytest.raises(ModelError, match=r"single \.tflite"):
        # two .tflite files and no model.tflite
        resolve.resolve_model(str(berlin_int8.parent), tmp_path)
    with pytest.raises(ModelError, match="no such model file"):
        resolve.resolve_model(str(tmp_path / "absent.tflite"), tmp_path)


def test_installed_directory_resolves_through_its_marker(berlin_int8, mirror, tmp_path) -> None:
    models = tmp_path / "models"
    cat.fetch("movinet-custom-cattle-int8", models, str(mirror), progress=False)
    by_dir = resolve.resolve_model(str(models / "movinet-custom-cattle-int8"), tmp_path / "other")
    by_file = resolve.resolve_model(str(models / "movinet-custom-cattle-int8" / "a0_int8.tflite"))
    for resolved in (by_dir, by_file):
        assert resolved.name == "movinet-custom-cattle-int8" and resolved.kind == "stream"
        assert resolved.labels and resolved.labels.name == "label_map.txt"


# ------------------------------------------------------------------------------ resolve_request


@pytest.fixture
def installed(mobilenet, a0, mirror, tmp_path) -> Path:
    models = tmp_path / "models"
    cat.fetch("mobilenet-v2-quant", models, str(mirror), progress=False)
    return models


def test_request_by_name_and_by_path_inside(mobilenet, installed) -> None:
    by_name = resolve.resolve_request("mobilenet-v2-quant", installed)
    assert by_name.kind == "image" and by_name.path.parent == installed / "mobilenet-v2-quant"
    rel = "mobilenet-v2-quant/mobilenet_v2_1.0_224_quant.tflite"
    by_path = resolve.resolve_request(rel, installed, _sha(mobilenet.read_bytes()).upper())
    assert by_path.path.samefile(installed / rel)
    assert by_path.sha256 == _sha(mobilenet.read_bytes())


@pytest.mark.parametrize(
    "spec",
    ["../outside.tflite", "mobilenet-v2-quant/../../outside.tflite", "A0"],
)
def test_request_refuses_paths_outside(a0, installed, spec) -> None:
    (installed.parent / "outside.tflite").write_bytes(a0.read_bytes())
    spec = str(a0) if spec == "A0" else spec
    with pytest.raises(ModelError, match="outside the models directory"):
        resolve.resolve_request(spec, installed)


def test_request_refuses_symlinks_pointing_out(a0, installed) -> None:
    (installed / "link.tflite").symlink_to(a0)
    with pytest.raises(ModelError, match="outside the models directory"):
        resolve.resolve_request("link.tflite", installed)
    inner = installed / "sneaky"
    inner.mkdir()
    (inner / "model.tflite").symlink_to(a0)
    with pytest.raises(ModelError, match="outside the models directory"):
        resolve.resolve_request("sneaky", installed)
    (installed / "dirlink").symlink_to(a0.parent, target_is_directory=True)
    with pytest.raises(ModelError, match="outside the models directory"):
        resolve.resolve_request("dirlink/movinet_a0_stream_int8.tflite", installed)


def test_request_sha256_must_match(mobilenet, installed) -> None:
    wrong = "ab" * 32
    with pytest.raises(ModelError) as err:
        resolve.resolve_request("mobilenet-v2-quant", installed, wrong)
    msg = str(err.value)
    assert f"sha256 mismatch: expected {wrong} got {_sha(mobilenet.read_bytes())}" in msg
    with pytest.raises(ModelError, match="64 hexadecimal"):
        resolve.resolve_request("mobilenet-v2-quant", installed, "123")


def test_request_unknown_or_missing(installed) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        resolve.resolve_request("movinet-a9", installed)
    with pytest.raises(ModelError, match="not installed"):
        resolve.resolve_request("movinet-a2-stream-int8", installed)
    with pytest.raises(ModelError, match="no such model"):
        resolve.resolve_request("nothing/here.tflite", installed)
    assert not os.path.exists(installed / "nothing")


@pytest.mark.slow
def test_an_install_from_a_wheel_carries_the_catalogue(tmp_path: Path) -> None:
    """``pip install .`` (not editable) has no source tree beside it: the catalogue travels in
    the wheel, so catalogue names resolve there too."""
    import subprocess
    import sys
    import sysconfig

    from tests.support.assets import ROOT

    wheels = tmp_path / "wheels"
    # The test tools include the build backend: no download (the tests stay offline).
    offline = ["--no-deps", "--no-build-isolation", "-w", str(wheels)]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", *offline, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed"]
        + ["--prefix", str(venv)]
        + [str(w) for w in wheels.glob("edge-*.whl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    # (--ignore-installed: else pip would first uninstall the edge of the running environment.)
    # Its dependencies from this environment (and from the system's packages, when this venv
    # sees them, as on a Raspberry Pi); edge itself only from the new one.
    deps = [sysconfig.get_paths()["purelib"]]
    deps += [p for p in sys.path if p.endswith("dist-packages") and p not in deps]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(deps)}
    env.pop(cat.CATALOGUE_ENV, None)
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import edge, edge.catalogue as c; print(edge.__file__); print(c.catalogue_path()); "
            "print(' '.join(c.load_catalogue()))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    module, path, names = probe.stdout.splitlines()
    assert Path(module).is_relative_to(venv), module
    assert Path(path) == venv / "share" / "edge" / "models" / "catalogue.yaml"
    assert names.split() == list(cat.load_catalogue())

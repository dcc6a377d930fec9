"""The picamera2 stand-in keeps the real library's signatures.

``fake_picamera2/picamera2-0.3.38-signatures.txt`` was dumped with ``inspect.signature``
from picamera2 0.3.38 on Raspberry Pi OS. Every method listed there that the fake
defines must take the same parameters (names, kinds, defaults) in the same order, and
the fake must define every method the edge backend calls.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).parent / "fake_picamera2"
SIGNATURES = FAKE / "picamera2-0.3.38-signatures.txt"

# What edge/sources/picamera2.py calls.
USED = {
    "Picamera2.__init__",
    "Picamera2.global_camera_info",
    "Picamera2.create_video_configuration",
    "Picamera2.configure",
    "Picamera2.start",
    "Picamera2.stop",
    "Picamera2.close",
    "Picamera2.capture_request",
    "Picamera2.wait",
    "CompletedRequest.make_array",
    "CompletedRequest.release",
}

_ENTRY = re.compile(r"^(Picamera2|CompletedRequest)\.(\w+)\s*(?:\[(\w+)\])?(\(.*)$")
_OBJECT_REPR = re.compile(r"<([\w.]+) '([^']*)'>")


def _params_text(rest: str) -> str:
    """The text inside the outer parentheses at the start of ``rest`` (quotes respected)."""
    depth, quote = 0, ""
    for i, ch in enumerate(rest):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    raise ValueError(f"unbalanced signature: {rest}")


def _parameters(text: str) -> list[tuple[str, str, str | None]]:
    """(name, kind, default repr) of each parameter of a dumped signature."""
    # Object reprs such as <libcamera.Transform 'identity'> are not Python: keep them as text.
    source = _OBJECT_REPR.sub(lambda m: repr(m.group(0)), text)
    fn = ast.parse(f"def f({source}): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    out: list[tuple[str, str, str | None]] = []
    for a, d in zip(positional, defaults, strict=True):
        kind = "POSITIONAL_ONLY" if a in args.posonlyargs else "POSITIONAL_OR_KEYWORD"
        out.append((a.arg, kind, None if d is None else _default_text(d)))
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", None))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append((a.arg, "KEYWORD_ONLY", None if d is None else _default_text(d)))
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", None))
    return out


def _default_text(node: ast.expr) -> str:
    value = ast.literal_eval(node)
    if isinstance(value, str) and _OBJECT_REPR.fullmatch(value):
        return value
    return repr(value)


def _fake_parameters(fn) -> list[tuple[str, str, str | None]]:
    sig = inspect.signature(fn)
    return [
        (p.name, p.kind.name, None if p.default is p.empty else repr(p.default))
        for p in sig.parameters.values()
    ]


def real_signatures() -> dict[str, tuple[str | None, list[tuple[str, str, str | None]]]]:
    found = {}
    for line in SIGNATURES.read_text().splitlines():
        m = _ENTRY.match(line)
        if m:
            cls, name, kind, rest = m.groups()
            found[f"{cls}.{name}"] = (kind, _parameters(_params_text(rest)))
    return found


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE))
    for name in ("picamera2", "libcamera"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("picamera2")
    assert Path(module.__file__).is_relative_to(FAKE)
    yield module
    for name in ("picamera2", "libcamera"):
        sys.modules.pop(name, None)


def test_the_list_is_read_whole():
    real = real_signatures()
    assert set(real) >= USED, sorted(USED - set(real))
    kind, params = real["Picamera2.create_video_configuration"]
    assert kind == "function"
    assert ("transform", "POSITIONAL_OR_KEYWORD", "<libcamera.Transform 'identity'>") in params
    assert real["Picamera2.global_camera_info"] == ("staticmethod", [])


def test_fake_matches_every_real_signature_it_defines(fake):
    real = real_signatures()
    checked = set()
    mismatches = []
    for key, (kind, params) in real.items():
        cls_name, name = key.split(".")
        cls = getattr(fake, cls_name)
        if name not in vars(cls):
            continue
        raw = inspect.getattr_static(cls, name)
        if kind == "staticmethod" and not isinstance(raw, staticmethod):
            mismatches.append(f"{key}: not a staticmethod")
        got = _fake_parameters(getattr(cls, name))
        if got != params:
            mismatches.append(f"{key}:\n  real {params}\n  fake {got}")
        checked.add(key)
    assert not mismatches, "\n".join(mismatches)
    assert checked >= USED, sorted(USED - checked)


def test_default_transform_is_an_identity_transform_in_the_configuration(fake):
    from libcamera import Transform

    fake.SIM.reset()
    cam = fake.Picamera2(0, allocator=None)
    try:
        config = cam.create_video_configuration(main={"size": (640, 480), "format": "RGB888"})
        assert config["transform"] == Transform()
        assert str(config["transform"]) == "identity"
        flipped = cam.create_video_configuration(transform=Transform(hflip=True, vflip=True))
        assert flipped["transform"] != Transform()
        cam.configure(config)
    finally:
        cam.close()

"""The committed test media: every file has its manifest row (size, sha256, source, licence)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.support import assets
from tests.support.assets import DATA

ROW = re.compile(r"^\| (\S+) \| (\d+) \| ([0-9a-f]{64}) \| (.+?) \| (Apache-2\.0|MIT) \|$", re.M)
LICENCES = {"Apache-2.0": "Apache-2.0.txt", "MIT": "MIT-"}


def _manifest() -> dict[str, tuple[int, str, str, str]]:
    text = (DATA / "MANIFEST.md").read_text(encoding="utf-8")
    return {m[1]: (int(m[2]), m[3], m[4], m[5]) for m in ROW.finditer(text)}


def _media() -> set[str]:
    skip = {DATA / "MANIFEST.md"}
    return {
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob("*")
        if p.is_file() and p not in skip and "LICENSES" not in p.parts
    }


def test_every_file_is_in_the_manifest_and_every_row_is_a_file() -> None:
    rows = _manifest()
    assert len(rows) >= 56
    assert set(rows) == _media()


def test_every_file_has_its_listed_size_and_sha256() -> None:
    for name, (size, sha, _, _) in _manifest().items():
        data = (DATA / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), name


def test_every_row_names_a_source_at_a_commit_and_a_licence_text_that_is_here() -> None:
    licences = {p.name for p in (DATA / "LICENSES").iterdir()}
    for name, (_, _, source, licence) in _manifest().items():
        assert re.match(r"^[\w.-]+/[\w.-]+ @ [0-9a-f]{40} : \S", source), (name, source)
        assert any(f.startswith(LICENCES[licence]) for f in licences), (name, licence)


def test_the_media_are_not_git_lfs_pointers() -> None:
    for name in _media():
        head = Path(DATA / name).read_bytes()[:64]
        assert not head.startswith(b"version https://git-lfs"), name


@pytest.mark.parametrize(
    ("in_ci", "outcome"), [(False, pytest.skip.Exception), (True, pytest.fail.Exception)]
)
def test_a_missing_real_asset_says_how_to_get_it_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, in_ci: bool, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(assets, "IN_CI", in_ci)
    absent = tmp_path / "absent.tflite"
    with pytest.raises(outcome) as err:
        assets.require(tmp_path, absent)
    assert str(absent) in str(err.value) and str(tmp_path) + "," not in str(err.value)
    assert "scripts/setup.sh --test" in str(err.value)

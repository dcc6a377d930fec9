"""Still sources: a camera command (rpicam-still / termux-camera-photo) and a watched folder.

There is no camera here, so ``rpicam-still`` is a small script that behaves like the real
tool from the outside: it takes ``-o PATH``, writes a JPEG there (a real photo), prints
progress on stderr, and fails with the real tool's message when asked to.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from edge.errors import SourceError
from edge.sources.command import CommandCamera
from edge.sources.watch import FolderWatcher


@pytest.fixture
def fox(images: Path) -> Path:
    return images / "fox.jpeg"


FAKE_RPICAM = """#!/bin/sh
# Stand-in for rpicam-still: same options used here, same failure output.
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--output) out="$2"; shift 2;;
    *) shift;;
  esac
done
echo "[0:00:00.100] [INFO] libcamera v0.3.0" >&2
case "${FAKE_MODE:-ok}" in
  ok) cp "$FAKE_PHOTO" "$out";;
  nocamera) echo "ERROR: *** no cameras available ***" >&2; exit 255;;
  partial) head -c 100 "$FAKE_PHOTO" > "$out"; echo "ERROR: capture aborted" >&2; exit 1;;
  nofile) exit 0;;
  hang) sleep 30 & echo $! > "$FAKE_PIDFILE"; wait;;
esac
"""


@pytest.fixture
def rpicam(fox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "rpicam-still"
    script.write_text(FAKE_RPICAM)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_PHOTO", str(fox))
    return script


def test_rpicam_command_writes_a_photo_into_the_images_folder(fox, rpicam: Path, tmp_path: Path):
    camera = CommandCamera("rpicam-still -n --immediate -o {path}", timeout_s=10)
    images = tmp_path / "state" / "images"
    first = camera.capture(images)
    second = camera.capture(images)
    assert first.parent == images and second.parent == images and first != second
    assert first.read_bytes() == fox.read_bytes()
    frame = camera.read()
    assert frame.image.shape == (480, 640, 3)


def test_placeholder_inside_a_word_and_paths_with_spaces(fox, tmp_path: Path) -> None:
    # termux-camera-photo takes the file as its argument; cp stands in with the same shape.
    camera = CommandCamera(f"cp '{fox}' {{path}}")
    target = tmp_path / "my photos" / "shot 1.jpg"
    assert camera.capture(target) == target
    assert target.read_bytes() == fox.read_bytes()
    camera = CommandCamera("cp " + str(fox) + " --no-preserve=all -T {path}")
    assert camera.capture(tmp_path / "x; rm -rf ~.jpg").is_file()  # nothing interpreted


def test_failure_reports_the_commands_stderr(rpicam, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "nocamera")
    camera = CommandCamera("rpicam-still -o {path}")
    with pytest.raises(SourceError) as err:
        camera.capture(tmp_path / "images")
    msg = str(err.value)
    assert "no cameras available" in msg and "exit 255" in msg and "\n" not in msg
    assert list((tmp_path / "images").iterdir()) == []


def test_partial_photo_is_removed_on_failure(rpicam, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "partial")
    camera = CommandCamera("rpicam-still -o {path}")
    with pytest.raises(SourceError, match="capture aborted"):
        camera.capture(tmp_path / "images")
    assert list((tmp_path / "images").iterdir()) == []


def test_exit_zero_without_a_photo(rpicam, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "nofile")
    with pytest.raises(SourceError, match="wrote no photo"):
        CommandCamera("rpicam-still -o {path}").capture(tmp_path)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


def test_hung_command_is_killed_with_its_children(rpicam, tmp_path, monkeypatch) -> None:
    pidfile = tmp_path / "child.pid"
    monkeypatch.setenv("FAKE_MODE", "hang")
    monkeypatch.setenv("FAKE_PIDFILE", str(pidfile))
    camera = CommandCamera("rpicam-still -o {path}", timeout_s=0.5)
    with pytest.raises(SourceError, match=r"no photo within 0\.5 s"):
        camera.capture(tmp_path / "images")
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_bad_command_templates(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="program not found"):
        CommandCamera("no-such-camera-tool-xyz -o {path}")
    with pytest.raises(SourceError, match="placeholder"):
        CommandCamera("rpicam-still -o photo.jpg")
    with pytest.raises(SourceError, match="cannot parse"):
        CommandCamera("rpicam-still -o '{path}")


# ------------------------------------------------------------------------------ watched folder


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_watcher_waits_until_a_file_stops_growing(fox, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    photo = inbox / "a.jpg"
    data = fox.read_bytes()
    watcher = FolderWatcher(inbox, settle_s=3600, poll_s=0)  # only stability counts here
    photo.write_bytes(data[:1000])
    assert watcher.poll() == []  # first sight
    photo.write_bytes(data[:5000])
    assert watcher.poll() == []  # still growing
    photo.write_bytes(data)
    assert watcher.poll() == []  # changed again
    assert watcher.poll() == [photo]  # unchanged across two polls: complete
    assert watcher.poll() == [photo]  # offered again until the caller has dealt with it
    watcher.done(photo)
    assert watcher.poll() == []  # then never again


def test_watcher_takes_moved_in_files_at_once_and_ignores_others(fox, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = tmp_path / "b.JPG"
    shutil.copyfile(fox, outside)
    _age(outside, 60)
    os.rename(outside, inbox / "b.JPG")
    (inbox / "notes.txt").write_text("x")
    (inbox / ".c.jpg.part").write_bytes(b"partial")
    shutil.copyfile(fox, inbox / ".hidden.jpg")
    _age(inbox / ".hidden.jpg", 60)
    (inbox / "sub.jpg").mkdir()
    watcher = FolderWatcher(inbox, settle_s=2, poll_s=0)
    assert watcher.poll() == [inbox / "b.JPG"]


def test_watcher_remembers_across_restarts_and_sees_replaced_files(fox, tmp_path: Path) -> None:
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    for name in ("1.jpg", "2.png"):
        shutil.copyfile(fox, inbox / name)
        _age(inbox / name, 60)
    first = FolderWatcher(inbox, state_path=state, poll_s=0)
    offered = first.poll()
    assert sorted(p.name for p in offered) == ["1.jpg", "2.png"]
    first.done(offered[0])  # a crash before the second was recorded...
    crashed = FolderWatcher(inbox, state_path=state, poll_s=0)
    assert crashed.poll() == [offered[1]]  # ...offers it again after the restart
    crashed.done(offered[1])
    restarted = FolderWatcher(inbox, state_path=state, poll_s=0)
    assert restarted.poll() == []
    (inbox / "1.jpg").write_bytes(fox.read_bytes()[:-10] + b"\xff\xd9")  # a new photo, same name
    _age(inbox / "1.jpg", 30)
    assert restarted.poll() == [inbox / "1.jpg"]


def test_watcher_zero_size_file_only_once_settled_and_stable(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    empty = inbox / "e.jpg"
    empty.write_bytes(b"")
    watcher = FolderWatcher(inbox, settle_s=2, poll_s=0)
    assert watcher.poll() == []  # may be about to be written
    _age(empty, 60)
    assert watcher.poll() == []  # signature changed (mtime)
    assert watcher.poll() == [empty]  # settled and stable: report it, the station will refuse it


def test_watcher_missing_folder_does_not_raise(tmp_path: Path) -> None:
    watcher = FolderWatcher(tmp_path / "not-yet", poll_s=0)
    assert watcher.poll() == []
    (tmp_path / "not-yet").mkdir()
    assert watcher.poll() == []


def test_watcher_polls_no_faster_than_its_interval(fox, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(fox, inbox / "a.jpg")
    eager = FolderWatcher(inbox, settle_s=3600, poll_s=0)
    assert eager.poll() == [] and eager.poll() == [inbox / "a.jpg"]  # stable across two scans
    # However often the daemon loop calls, two scans are at least poll_s apart.
    paced = FolderWatcher(inbox, settle_s=3600, poll_s=3600)
    assert all(paced.poll() == [] for _ in range(5))


def test_a_photo_in_progress_is_abandoned_when_asked_to_stop(tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    cam = CommandCamera("sh -c 'sleep 30' {path}", timeout_s=60, cancel=stop)
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="cancelled"):
        cam.capture(tmp_path / "x.jpg")
    assert time.monotonic() - t0 < 10  # not the 30 s the command would take
    assert not (tmp_path / "x.jpg").exists()

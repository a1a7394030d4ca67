"""The output folder of ``python -m bgmatting.infer``: an empty ``--output`` is refused, nothing is written through
a symbolic link (neither at the start nor when the files move into place), and one run at a time holds the folder
(two runs at once: the second is refused up front, the first finishes; a dead run's lock is taken over)."""
from __future__ import annotations

import contextvars
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import disc_alpha, paste_subject, photo

from bgmatting import infer
from bgmatting.io import DataError, read_alpha, read_image, write_image
from bgmatting.inference.job import InferenceJob, run_job
from bgmatting.inference.pipeline import MemoryLimitError
from bgmatting.inference.output_folder import LOCK_NAME, STAGING_PREFIX
from bgmatting.inference.sinks import SUMMARY_NAME, ResultWriter

REFUSED_LINK = "is a symbolic link; refusing to write through it"


def _run(capsys, args: list, output) -> tuple[int, str]:
    code = infer.main([str(a) for a in args] + ["--output", str(output), "--no-progress"])
    return code, capsys.readouterr().err


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(photo_folder, tiny_checkpoint) -> list:
    """Arguments of a run over the three photos (everything but --output)."""
    return ["--input", photo_folder["images"], "--background", photo_folder["plates"], "--segmentation",
            photo_folder["masks"], "--checkpoint", tiny_checkpoint, "--size", 32, "--no-align"]


def test_an_empty_output_is_refused_and_nothing_lands_in_the_current_folder(tmp_path, capsys, monkeypatch, photos):
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    code, err = _run(capsys, photos, "")
    assert code == 2 and err.strip() == ("error: output '': an empty path; give a file or folder name "
                                         "(. for the current folder)"), err
    assert _tree(tmp_path) == before and not (tmp_path / "alpha").exists()


# --------------------------------------------------------------------------------------------- symbolic links
@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A folder outside the output folder that a link points into; nothing may change in it."""
    folder = tmp_path / "elsewhere"
    write_image(folder / "precious.png", np.full((4, 4, 3), 0.5, np.float32))
    return folder


LINKS = {  # where the link is in the output folder: (make it, the link named in the message)
    "output subfolder": (lambda out, away: (out / "alpha").symlink_to(away, target_is_directory=True), "alpha"),
    "file in a subfolder": (lambda out, away: (out / "composite").mkdir() or
                            (out / "composite" / "chelsea.png").symlink_to(away / "precious.png"),
                            "composite/chelsea.png"),
    "summary": (lambda out, away: (out / SUMMARY_NAME).symlink_to(away / "precious.png"), SUMMARY_NAME),
}


@pytest.mark.parametrize("place", sorted(LINKS))
def test_a_link_in_the_output_folder_is_refused_before_anything_is_written(place, tmp_path, capsys, photos,
                                                                           elsewhere):
    out = tmp_path / "out"
    out.mkdir()
    make, named = LINKS[place]
    make(out, elsewhere)
    before_away, before_out = _tree(elsewhere), sorted(p.name for p in out.rglob("*"))
    code, err = _run(capsys, photos, out)
    assert code == 2 and err.strip() == f"error: {out / named}: {REFUSED_LINK} (remove it or choose another " \
                                        "output folder)", err
    assert _tree(elsewhere) == before_away and sorted(os.listdir(elsewhere)) == ["precious.png"]
    assert sorted(p.name for p in out.rglob("*")) == before_out  # no staging folder, no lock file


def test_the_move_into_place_does_not_follow_a_link_made_during_the_run(tmp_path, elsewhere):
    out = tmp_path / "out"
    frame = np.full((8, 8), 0.5, np.float32), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32)
    with pytest.raises(DataError, match=f"{out / 'alpha'}: {REFUSED_LINK}"):
        with ResultWriter(out) as writer:
            writer.write("frame", *frame)
            (out / "alpha").symlink_to(elsewhere, target_is_directory=True)  # after the check at the start
            writer.finish({})
    assert sorted(os.listdir(elsewhere)) == ["precious.png"]
    assert not (out / SUMMARY_NAME).exists() and not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------ one run at a time
def test_a_second_run_while_the_first_writes_is_refused_and_the_first_finishes(tmp_path, capsys, monkeypatch,
                                                                               photos):
    """Two runs into one folder from two threads: the first stops after its first frame until the second is over
    (its frames are written on the runner's writer thread, in the first run's context)."""
    out = tmp_path / "out"
    first_wrote, second_done = threading.Event(), threading.Event()
    write = ResultWriter.write
    run_name = contextvars.ContextVar("run_name", default="")

    def pausing_write(self, *args):
        write(self, *args)
        if run_name.get() == "first":
            first_wrote.set()
            assert second_done.wait(120)

    monkeypatch.setattr(ResultWriter, "write", pausing_write)
    result: dict = {}

    def first() -> None:
        run_name.set("first")
        job = infer.job_from_args(infer.build_parser().parse_args([str(a) for a in photos] + [
            "--output", str(out), "--no-progress"]))
        try:
            result["summary"] = run_job(job)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            result["error"] = error

    thread = threading.Thread(target=first, name="first")
    thread.start()
    try:
        assert first_wrote.wait(120)
        code, err = _run(capsys, photos, out)
    finally:
        second_done.set()
        thread.join(120)
    assert code == 2 and "another run (process " in err and "is writing into this output folder" in err, err
    assert str(out) in err and len(err.strip().splitlines()) == 1
    assert "error" not in result, result.get("error")
    assert result["summary"]["frames"] == 3 and (out / SUMMARY_NAME).exists()
    assert sorted(os.listdir(out / "alpha")) == ["chelsea.png", "coffee.png", "rocket.png"]
    assert not list(out.rglob(".*"))  # no staging folder, no lock file


def _staging_appears(out: Path, run: subprocess.Popen, timeout: float = 240.0) -> None:
    """Wait until the run ``run`` has a staging folder in ``out`` (it is matting), or has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        if out.is_dir() and any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir()):
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_into_one_folder_never_lose_finished_work(tmp_path, synthetic_clip, tiny_checkpoint):
    """Two real ``python -m bgmatting.infer`` processes into one folder, the second started while the first is
    matting: each succeeds or is refused up front with one line (never a traceback); the folder ends complete."""
    frames, plate, out, count = tmp_path / "frames", read_image(synthetic_clip["plate"]), tmp_path / "out", 32
    for i in range(count):
        write_image(frames / f"{i:03d}.png", paste_subject(plate, synthetic_clip["alphas"][i % 8]))
    command = [sys.executable, "-m", "bgmatting.infer", "--input", str(frames), "--sequence", "--background",
               str(synthetic_clip["plate"]), "--checkpoint", str(tiny_checkpoint), "--size", "32", "--no-align",
               "--png-sequences", "--output", str(out), "--no-progress"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    _staging_appears(out, runs[0])
    runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(run.wait(300), run.communicate()[1]) for run in runs]
    for code, err in results:
        assert "Traceback" not in err, err
        assert code == 0 or (code == 2 and "is writing into this output folder" in err), (code, err)
    assert results[0][0] == 0
    assert len(os.listdir(out / "alpha")) == count and (out / "frames_composite.mp4").exists()
    assert f'"frames": {count}' in (out / SUMMARY_NAME).read_text()
    assert not list(out.rglob(".*"))


HOLDER = """
import fcntl, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{socket.gethostname()} {os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(600)
"""


def test_a_live_holder_refuses_the_run_and_its_lock_is_taken_over_once_it_died(tmp_path, capsys, photos):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = _run(capsys, photos, out)
        assert code == 2 and f"another run (process {holder.pid} on " in err, err
        assert sorted(os.listdir(out)) == [LOCK_NAME]  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(60)
    assert (out / LOCK_NAME).exists()  # a killed process leaves its lock file behind
    code, err = _run(capsys, photos, out)
    assert code == 0, err
    assert read_alpha(out / "alpha" / "chelsea.png").shape == (96, 128) and not (out / LOCK_NAME).exists()


def test_the_lock_is_released_when_a_run_fails(tmp_path, tiny_checkpoint):
    """A run that fails after taking the lock (here: its frame is refused by the memory limit) leaves the folder
    free for the next run."""
    plate = photo("coffee", 96, 128)
    job = InferenceJob(input=paste_subject(plate, disc_alpha(96, 128, (48.0, 64.0), 20.0)), background=plate,
                       checkpoint=tiny_checkpoint, output=tmp_path / "out", size=32, alignment="none",
                       max_memory_gb=1e-6, progress=False)
    with pytest.raises(MemoryLimitError):
        run_job(job)
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    job.max_memory_gb = None
    assert run_job(job)["frames"] == 1

"""The CLI on a knowledge base that a running ``kbengine serve`` owns: seek, detect, info and docs
answer through the service (same JSON as the service's, timings aside); a stale advert is ignored;
without a service the CLI runs in-process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kbengine import synth
from kbengine.cli.remote import ADVERT
from tests.service.conftest import SIZE
from tests.service.test_api import without_timings

KBENGINE = [sys.executable, "-m", "kbengine.cli"]


def env() -> dict[str, str]:
    return {**os.environ, "KBENGINE_TORCH_THREADS": "1", "KBENGINE_ENCODER": "packaged"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBENGINE, *args], capture_output=True, text=True, env=env(), timeout=300, check=False)


def post(url: str, path: str, photo: Path) -> Any:
    from kbengine.cli.remote import Remote, call

    return call(Remote(url), "POST", path, files=[("image", photo)])


@pytest.fixture
def served(served_kb: Path, tmp_path: Path):
    """A ``kbengine serve --port 0`` subprocess on a copy of the small knowledge base: (kb, url)."""
    kb = tmp_path / "kb"
    shutil.copytree(served_kb, kb)
    process = subprocess.Popen(
        [*KBENGINE, "serve", "--kb", str(kb), "--port", "0"], env=env(), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while not (kb / ADVERT).exists():
            assert process.poll() is None and time.time() < deadline, process.stderr and process.stderr.read()
            time.sleep(0.2)
        url = json.loads((kb / ADVERT).read_text())["url"]
        yield kb, url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not (kb / ADVERT).exists()  # removed at exit


def test_cli_answers_through_the_running_service(served, tmp_path):
    kb, url = served
    photo = tmp_path / "part.png"
    synth.sample("disc", "scratch", 5, SIZE)[0].save(photo)
    seek = cli("seek", str(photo), "--kb", str(kb), "--json")
    assert seek.returncode == 0, seek.stderr
    mine = json.loads(seek.stdout)
    theirs = post(url, "/v1/seek", photo)
    assert mine["query"] == str(photo)
    theirs["query"] = str(photo)  # the service saw an upload; the CLI names the photo as given
    assert without_timings(mine) == without_timings(theirs)
    detect = cli("detect", str(photo), "--kb", str(kb), "--json")
    assert detect.returncode == 0, detect.stderr
    found, expected = json.loads(detect.stdout), post(url, "/v1/detect", photo)
    expected["image"] = str(photo)
    assert without_timings(found) == without_timings(expected)
    for command, route in (("info", "/v1/info"), ("docs", "/v1/documents?limit=200")):
        done = cli(command, "--kb", str(kb), "--json")
        assert done.returncode == 0, done.stderr
        with urllib.request.urlopen(url + route) as reply:
            assert json.loads(done.stdout) == json.loads(reply.read())
    human = cli("seek", str(photo), "--kb", str(kb))
    assert human.returncode == 0 and "predicted defect type" in human.stdout


def test_a_stale_advert_is_ignored_and_the_cli_runs_in_process(served_kb, tmp_path):
    kb = tmp_path / "kb"
    shutil.copytree(served_kb, kb)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    advert = {"url": "http://127.0.0.1:9", "pid": int(dead.stdout), "host": socket.gethostname(), "started": 0}
    (kb / ADVERT).write_text(json.dumps(advert))
    done = cli("info", "--kb", str(kb), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"] > 0


def test_an_unreachable_server_is_one_clear_line(tmp_path):
    done = cli("info", "--kb", str(tmp_path / "kb"), "--server", "http://127.0.0.1:9")
    assert done.returncode == 2 and done.stderr.startswith("error: cannot reach the kbengine service at")
    assert "Traceback" not in done.stderr

"""The fair-by-default thread policy: leases shared among live processes, stale leases ignored,
passive OpenMP waits set before torch loads, explicit threads winning."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbengine.core import threads

HOLDER = """
import sys, time
from kbengine.core import threads
threads.live_leases()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(threads, "_lease", None)
    return tmp_path


def _holder(runtime: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_alone_a_process_keeps_every_core(runtime: Path) -> None:
    assert threads.share() == threads.cores()
    assert threads.threads_for(0, 1, True) == threads.cores()


def test_live_processes_share_the_cores_and_dead_ones_count_no_more(runtime: Path) -> None:
    other = _holder(runtime)
    try:
        assert len(threads.live_leases()) == 2
        assert threads.share() == max(1, threads.cores() // 2) or threads.share() == threads.cores() // 2 + 1
    finally:
        other.kill()  # its lock dies with it; the file stays behind, stale
        other.wait()
    assert (threads.lease_dir() / f"{other.pid}.lease").exists()
    assert threads.live_leases() == [f"{os.getpid()}.lease"]
    assert not (threads.lease_dir() / f"{other.pid}.lease").exists()  # removed as stale
    assert threads.share() == threads.cores()


def test_explicit_threads_win_and_workers_divide_the_share(runtime: Path) -> None:
    assert threads.threads_for(3, 2, True) == 3
    assert threads.threads_for(0, threads.cores() * 4, True) == 1  # never zero
    assert threads.threads_for(0, 2, False) == max(1, threads.cores() // 2)


def test_fit_sets_the_calling_threads_torch_threads(runtime: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.fit(1, 1, True, force=True) == 1
        assert torch.get_num_threads() == 1
        assert threads.fit(0, 1, True, force=True) == threads.cores()
        assert torch.get_num_threads() == threads.cores()
    finally:
        torch.set_num_threads(before)


def test_a_lone_process_takes_the_cores_back_on_its_next_call(runtime: Path) -> None:
    import torch

    from kbengine.core.encoders import get_encoder
    from kbengine.core.settings import Settings

    if threads.cores() < 2:
        pytest.skip("needs 2 cores")
    before = torch.get_num_threads()
    other = _holder(runtime)
    try:
        encoder = get_encoder(Settings(encoder="packaged"))
        assert torch.get_num_threads() == threads.cores() // 2 or torch.get_num_threads() == threads.cores() // 2 + 1
        other.kill()
        other.wait()
        time.sleep(threads.RECHECK_S)
        from PIL import Image

        encoder.embed_images([Image.new("RGB", (64, 64))])
        assert torch.get_num_threads() == threads.cores()
    finally:
        if other.poll() is None:
            other.kill()
        torch.set_num_threads(before)


def test_openmp_waits_passively_unless_told_otherwise() -> None:
    code = "import kbengine.core.encoders, torch; torch.ones(4) @ torch.ones(4)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "OMP_DISPLAY_ENV": "VERBOSE"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "GOMP_SPINCOUNT = '0'" in out.stderr
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "OMP_DISPLAY_ENV": "VERBOSE", "OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in out.stderr

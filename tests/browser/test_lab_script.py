"""The README's first command, `bash scripts/lab.sh`, starts JupyterLab on notebooks/, as root too.

As root JupyterLab refuses to start unless it is given --allow-root; the script passes it when the user id
is 0. The test runs the real script (set-up, model preparation, server) with a free port and every Jupyter
directory in a temporary folder, waits for the server to answer, and stops it and its process group.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from labdriver import _free_port, isolated_env

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300  # set-up is a no-op here, but converting the embedded model takes ~40 s when not cached


def _setup_is_a_no_op() -> bool:
    """True when scripts/setup.sh would install nothing (its stamp matches; see the script)."""
    inputs = ("pyproject.toml", "requirements/constraints.txt", "scripts/setup.sh")
    sources = b"".join((REPO / p).read_bytes() for p in inputs)
    stamp = REPO / ".setup-stamp"
    return (REPO / ".venv/bin/python").exists() and stamp.is_file() and (
        stamp.read_text().strip() == hashlib.sha256(sources).hexdigest()[:16]
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the script's process group (the server and anything it started), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_lab_script_starts_jupyterlab_and_the_server_answers(tmp_path, lorakit_cache_dir):
    if not _setup_is_a_no_op():
        # Never let a test pip-install into a developer's environment; in CI scripts/test.sh has run set-up.
        message = "scripts/setup.sh would install packages here (its stamp is stale): run it first"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    log_path = tmp_path / "lab.log"
    args = [f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", "--no-browser",
            "--IdentityProvider.token=", "--ServerApp.password="]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["bash", str(REPO / "scripts/lab.sh"), *args], cwd=tmp_path, env=isolated_env(tmp_path / "jupyter"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(f"http://127.0.0.1:{port}/api/status"):
            log_tail = log_path.read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"scripts/lab.sh exited with {proc.returncode}:\n{log_tail}"
            assert time.monotonic() < deadline, f"no answer after {START_TIMEOUT_S} s:\n{log_tail}"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=10) as response:
            listing = response.read().decode()
        assert "01_number_formats.ipynb" in listing  # it serves notebooks/
    finally:
        _stop(proc)
    assert "Running as root is not recommended" not in log_path.read_text(errors="replace")

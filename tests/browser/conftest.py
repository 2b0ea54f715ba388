"""Session fixtures for the real-browser tests: one JupyterLab server, one headless Chromium.

The server serves a temporary root that holds copies of notebooks/ (outputs stripped), so tests never
touch the repository's notebooks. Everything is skipped with a reason when Chromium or Playwright is
missing on a developer machine, and fails in CI (``CI=true``), where a missing browser is a set-up bug.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labdriver import CHROMIUM, CHROMIUM_ARGS, LabServer, copy_notebooks

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts"


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LORAKIT_CHROMIUM)"
    return None


def _require_browser() -> None:
    reason = _missing_browser()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory, lorakit_cache_dir: Path) -> Iterator[LabServer]:
    """A JupyterLab server on 127.0.0.1 (no token) over a temporary root with copies of notebooks/.

    Depends on ``lorakit_cache_dir`` (tests/conftest.py) so that its kernels share the suite's converted
    embedded model instead of converting it again under the home directory.
    """
    _require_browser()
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    copy_notebooks(NOTEBOOKS, root)
    server = LabServer(base / "state", root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory, lab_server: LabServer) -> Iterator[Any]:
    """A headless Chromium (Debian's) with a fresh profile, shared by all browser tests."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
            env=lab_server.env,  # keeps Chromium's crash reports under the temporary XDG dirs
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: Any, lab_server: LabServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh tab; afterwards its kernels are shut down and, when the test failed, the page is saved."""
    failure_picture = ARTIFACTS / f"FAILED-{_safe(request.node.name)}.png"
    failure_picture.unlink(missing_ok=True)  # from an earlier run of this test
    tab = browser_context.new_page()
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(failure_picture), full_page=True)
        tab.close()
        lab_server.shutdown_sessions()


@pytest.fixture
def artifacts() -> Path:
    """The (gitignored) folder for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the page fixture knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

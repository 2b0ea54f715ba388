"""Drive a throwaway Jupyter server and its notebook pages from Playwright (helpers for the browser tests).

``LabServer`` starts JupyterLab (which also serves Notebook 7) on a free 127.0.0.1 port, without a token,
with every Jupyter/IPython/matplotlib/XDG directory inside one temporary directory, and stops it and its
kernels whatever happens. The page helpers open a notebook, run all its cells through the menu, and wait
until every cell has run, failing with the traceback text as soon as an error output appears.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import psutil

CHROMIUM = Path(os.environ.get("LORAKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab renders an error output like stderr (same mime type, same classes); IPython's traceback is
# told apart by its first line of 75 dashes. The saved notebook is checked too (see saved_errors).
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
TRACEBACK_START = re.compile(r"^-{75}\n")
WIDGET_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]'
KERNEL_DIALOG = ".jp-Dialog"
# Settings that keep JupyterLab quiet and deterministic: no news toast over the page, and every cell
# attached to the DOM (the default windowing skips off-screen cells, which hides their prompts).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(base: Path) -> dict[str, str]:
    """The current environment with all Jupyter, IPython, matplotlib and XDG state moved under ``base``."""
    dirs = {
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
        "MPLCONFIGDIR": "mpl",
        "XDG_CONFIG_HOME": "xdg-config",
        "XDG_CACHE_HOME": "xdg-cache",
    }
    env = dict(os.environ)
    for var, sub in dirs.items():
        (base / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / sub)
    # A kernel in a real front end draws inline; an inherited MPLBACKEND=Agg would hide every figure.
    env.pop("MPLBACKEND", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    for rel, settings in LAB_SETTINGS.items():
        path = base / "lab-settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return env


def copy_notebook(src: Path, dst: Path) -> None:
    """Copy a notebook without its stored outputs, so that every prompt number on the page is from this run."""
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, dst)


def write_notebook(path: Path, sources: list[str]) -> None:
    """Write a notebook of code cells (a scratch notebook a test builds for itself)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, path)


class LabServer:
    """A JupyterLab server on 127.0.0.1 serving ``root``; use as a context manager."""

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root = base, root
        self.env = isolated_env(base)
        self.log_path = base / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LabServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 90) -> None:
        """Start the server and wait until /api/status answers (a free port raced away: try another)."""
        for _attempt in range(3):
            self.port = _free_port()
            self._spawn()
            if self._wait_ready(timeout_s):
                return
            self.stop()
        raise RuntimeError(f"JupyterLab did not start; last log lines:\n{self.log_tail()}")

    def _spawn(self) -> None:
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}",
            "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
            "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", "--allow-root",
            f"--ServerApp.root_dir={self.root}",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        # Own session: stop() can signal the server's whole process group.
        self.proc = subprocess.Popen(
            cmd, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                self.api("GET", "/api/status")
                return True
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        return False

    def stop(self) -> None:
        """Stop the server and every kernel it started (kernels run in their own process groups)."""
        if self.proc is None:
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            child.kill()
        self.proc = None

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the server log (kernel tracebacks land here too)."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API and return the decoded JSON (None for an empty answer)."""
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def session(self, nb_path: str) -> dict[str, Any] | None:
        """The server-side session of the notebook at ``nb_path`` (relative to the root), if any."""
        for sess in self.api("GET", "/api/sessions"):
            if sess.get("path") == nb_path:
                return sess
        return None

    def wait_kernel_idle(self, nb_path: str, timeout_s: float = 60) -> None:
        """Wait until the notebook has a kernel session and that kernel is idle.

        The page's toolbar says "idle" before the session exists; running cells then is lost to a
        "Select Kernel" dialog, so the server is the one to ask.
        """
        deadline = time.monotonic() + timeout_s
        state = "no session"
        while time.monotonic() < deadline:
            sess = self.session(nb_path)
            state = sess["kernel"]["execution_state"] if sess else "no session"
            if state == "idle":
                return
            time.sleep(0.25)
        raise TimeoutError(f"kernel of {nb_path} not idle after {timeout_s} s (state: {state})")

    def shutdown_sessions(self) -> None:
        """Shut every kernel down (a test's kernels must not hold memory during the next test)."""
        for sess in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{sess['id']}")


def open_notebook(
    page: Any, server: LabServer, nb_path: str, app: str = "lab", timeout_s: float = 90
) -> None:
    """Open a notebook in JupyterLab (``app="lab"``) or Notebook 7 (``"notebook"``), kernel idle."""
    # Accept "Select Kernel" if it ever shows (a race with the session), instead of losing the run.
    page.add_locator_handler(
        page.locator(KERNEL_DIALOG).filter(has_text="Select Kernel"),
        lambda: page.locator(f"{KERNEL_DIALOG} .jp-mod-accept").click(),
    )
    # ?reset: start from an empty workspace, so notebooks of earlier tests do not reopen (and start kernels).
    url = f"{server.url}/lab/tree/{nb_path}?reset" if app == "lab" else f"{server.url}/notebooks/{nb_path}"
    page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_s * 1000)
    server.wait_kernel_idle(nb_path, timeout_s)


def run_all_cells(page: Any) -> None:
    """Run every cell through the Run menu (anchored: "Restart Kernel and Run All Cells…" also matches)."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


_CELL_STATE_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')]
  .filter(cell => (cell.querySelector('.cm-content')?.textContent ?? '').trim() !== '')
  .map(cell => (cell.querySelector('.jp-InputArea-prompt')?.textContent ?? '').trim())"""


def error_texts(page: Any) -> list[str]:
    """Text of every error (traceback) output on the page; other stderr (warnings, logs) is not an error."""
    texts = page.locator(STDERR_OUTPUT).all_inner_texts()
    return [text.strip() for text in texts if TRACEBACK_START.match(text)]


def widget_problems(page: Any) -> list[str]:
    """Widget outputs that did not render (ipywidgets shows "Error displaying widget" or nothing at all)."""
    problems = []
    for index, output in enumerate(page.locator(WIDGET_OUTPUT).all()):
        text = output.inner_text()
        if "Error displaying widget" in text or output.locator(".jupyter-widgets").count() == 0:
            problems.append(f"widget output {index}: {text.strip()[:200] or 'empty'}")
    return problems


def saved_errors(page: Any, server: LabServer, nb_path: str, timeout_s: float = 30) -> list[str]:
    """Save the notebook from the page and list what is wrong in the file the front end wrote.

    An error output, or a non-empty code cell without an execution count, is wrong.
    """
    before = server.api("GET", f"/api/contents/{nb_path}?content=0")["last_modified"]
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + timeout_s
    while server.api("GET", f"/api/contents/{nb_path}?content=0")["last_modified"] == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{nb_path}: the page did not save within {timeout_s} s")
        time.sleep(0.2)
    nb = nbformat.reads(json.dumps(saved_notebook(server, nb_path)), as_version=4)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.execution_count is None:
            problems.append(f"cell {index} did not run")
        for out in cell.outputs:
            if out.output_type == "error":
                problems.append(f"cell {index} raised {out.ename}: {out.evalue}")
    return problems


def saved_notebook(server: LabServer, nb_path: str, tries: int = 10) -> dict[str, Any]:
    """The notebook file as the server reads it; retried while the file is still being written (the server
    answers 400 for a half-written notebook)."""
    for attempt in range(tries):
        try:
            return server.api("GET", f"/api/contents/{nb_path}")["content"]
        except urllib.error.HTTPError as exc:
            if exc.code != 400 or attempt == tries - 1:
                raise
            time.sleep(0.3)
    raise AssertionError("unreachable")


def wait_all_cells_done(page: Any, server: LabServer, nb_path: str, timeout_s: float) -> list[str]:
    """Wait until every non-empty code cell shows an execution count and the kernel is idle.

    Fails at once with the traceback when an error output appears, when the run stopped early (cells
    left without a count), or when the kernel dies. Returns the prompts (e.g. ``["[1]:", "[2]:"]``).
    """
    deadline = time.monotonic() + timeout_s
    settled = 0
    prompts: list[str] = []
    while time.monotonic() < deadline:
        errors = error_texts(page)
        if errors:
            raise AssertionError(f"{nb_path}: a cell raised:\n" + "\n---\n".join(errors))
        prompts = page.evaluate(_CELL_STATE_JS)
        sess = server.session(nb_path)
        state = sess["kernel"]["execution_state"] if sess else "no session"
        if state == "dead":
            raise AssertionError(f"{nb_path}: the kernel died; server log:\n{server.log_tail()}")
        numbered = [bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts]
        running = any(p == "[*]:" for p in prompts)
        # Two idle polls in a row: the kernel goes idle for a moment between queued cells.
        settled = settled + 1 if state == "idle" and not running and any(numbered) else 0
        if settled >= 2 and all(numbered):
            return prompts
        if settled >= 4:
            stderr = page.locator(STDERR_OUTPUT).all_inner_texts()
            raise AssertionError(f"{nb_path}: the run stopped early; prompts {prompts}; stderr:\n{stderr}")
        time.sleep(0.5)
    raise TimeoutError(f"{nb_path}: cells not done after {timeout_s} s; prompts: {prompts}")


def run_notebook(page: Any, server: LabServer, nb_path: str, timeout_s: float, app: str = "lab") -> None:
    """Open a notebook, run all its cells, and assert that every cell ran without an error."""
    open_notebook(page, server, nb_path, app=app)
    run_all_cells(page)
    wait_all_cells_done(page, server, nb_path, timeout_s)
    problems = widget_problems(page) + saved_errors(page, server, nb_path)
    assert not problems, f"{nb_path}: " + "; ".join(problems)


def copy_notebooks(src_dir: Path, dst_dir: Path) -> list[str]:
    """Copy every notebook of ``src_dir`` (outputs stripped) into ``dst_dir``; return their names."""
    names = sorted(p.name for p in src_dir.glob("*.ipynb"))
    for name in names:
        copy_notebook(src_dir / name, dst_dir / name)
    for extra in src_dir.iterdir():  # data files next to the notebooks, if any
        if extra.is_file() and extra.suffix != ".ipynb":
            shutil.copy2(extra, dst_dir / extra.name)
    return names


# Every text node under an element, one per line: what the widget shows, its SVG labels included (innerText
# leaves SVG text out, textContent runs neighbouring labels together).
_TEXT_JS = """(el) => { const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT), out = [];
  while (walker.nextNode()) {
    const t = walker.currentNode.textContent.trim();
    if (t && !walker.currentNode.parentElement.closest('style, script')) out.push(t);
  }
  return out.join('\\n'); }"""


def shown_text(locator: Any) -> str:
    """What a widget shows, one text node per line (scripts/readme_pictures.py keeps it with the picture)."""
    return locator.evaluate(_TEXT_JS)


def screenshot(page: Any, locator: Any, path: Path) -> None:
    """Save a picture of one widget, and beside it (``.txt``) the text it showed; the window is made tall enough
    that the notebook does not clip it."""
    size = page.viewport_size
    box = locator.bounding_box()
    # The notebook scrolls inside the page: a widget taller than its panel would be cut off.
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(box["height"]) + 300)})
    try:
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(path), animations="disabled")
        Path(path).with_suffix(".txt").write_text(shown_text(locator), encoding="utf-8")
    finally:
        page.set_viewport_size(size)


def img_src(page: Any, selector: str) -> str:
    """The src of the first image matching ``selector`` ("" when it has none yet)."""
    return page.locator(selector).get_attribute("src") or ""


def wait_src_change(page: Any, selector: str, old: str, timeout_s: float) -> str:
    """Wait until an image widget shows a new picture (ipywidgets gives every new value a new blob URL)."""
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel); return img && img.src && img.src !== old; }",
        arg=[selector, old],
        timeout=timeout_s * 1000,
    )
    return img_src(page, selector)


def wait_src_settled(page: Any, selector: str, old: str, timeout_s: float, quiet_s: float = 1.0) -> str:
    """Wait for a new picture, then until no newer one has come for ``quiet_s`` (throttled redraws trail)."""
    src = wait_src_change(page, selector, old, timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        latest = img_src(page, selector)
        if latest == src:
            return src
        src = latest
    raise TimeoutError(f"{selector} kept changing for {timeout_s} s")


# Layout checks run in the page: every labelled ipywidgets control under a root element.
_LAYOUT_JS = """(root) => {
  const problems = [];
  const name = (c) => (c.querySelector(':scope > .widget-label')?.textContent || c.className).trim();
  const controls = [...root.querySelectorAll('.widget-inline-hbox')].filter(c => c.offsetParent !== null);
  const rootBox = root.getBoundingClientRect();
  for (const c of controls) {
    const box = c.getBoundingClientRect();
    if (box.right > rootBox.right + 1 || box.left < rootBox.left - 1) problems.push(`sticks out: ${name(c)}`);
    const label = c.querySelector(':scope > .widget-label');
    if (label && label.offsetParent !== null && label.textContent.trim()) {
      if (label.scrollWidth > label.clientWidth + 1) problems.push(`label cut: ${name(c)}`);
      for (const part of c.querySelectorAll(':scope > :not(.widget-label)')) {
        const p = part.getBoundingClientRect();
        if (p.width > 0 && label.getBoundingClientRect().right > p.left + 1) problems.push(`label over its control: ${name(c)}`);
      }
    }
  }
  for (let i = 0; i < controls.length; i++) {
    for (let j = i + 1; j < controls.length; j++) {
      const a = controls[i].getBoundingClientRect(), b = controls[j].getBoundingClientRect();
      const inside = controls[i].contains(controls[j]) || controls[j].contains(controls[i]);
      const overlap = a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
      if (overlap && !inside) problems.push(`overlap: ${name(controls[i])} / ${name(controls[j])}`);
    }
  }
  return problems;
}"""


def layout_problems(locator: Any) -> list[str]:
    """Labelled controls under ``locator`` that stick out of it, overlap each other, or have a cut or covering
    label (what a person sees as text running into the next field)."""
    return locator.evaluate(_LAYOUT_JS)


def set_width(page: Any, width: int, height: int = 900) -> None:
    """Resize the window (JupyterLab re-lays out its panels)."""
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(500)


# What a person sees cut: every table (or its scroll box), picture and image under a widget root against the
# widget's right edge as it shows on the page (within the output column and the notebook panel); in a table
# that scrolls, a first column that does not stay put; an SVG label outside its picture; a dropdown option or
# a placeholder wider than its box.
_CUT_JS = r"""(root, options) => {
  const box = (el) => el.getBoundingClientRect();
  const output = root.closest('.jp-OutputArea-output'), panel = root.closest('.jp-NotebookPanel');
  const right = Math.min(box(root).right, output ? box(output).right : Infinity, panel ? box(panel).right : Infinity);
  const shown = (el) => el.getClientRects().length > 0;
  const problems = [];
  const out = (what, edge) => { if (edge > right + 0.5) problems.push(`${what} ends ${Math.round(edge - right)} px past the edge`); };
  for (const table of [...root.querySelectorAll('table')].filter(shown)) {
    const name = table.className || 'table';
    const scroller = table.closest('.lorakit-scroll');
    out(name, box(scroller || table).right);
    if (scroller && scroller.scrollWidth > scroller.clientWidth + 1) {
      const first = table.querySelector('tr > :first-child');
      if (getComputedStyle(first).position !== 'sticky') problems.push(`${name} scrolls but its first column is not fixed`);
      const before = box(first).left;
      scroller.scrollLeft = scroller.scrollWidth;
      const after = box(first).left, end = [...table.querySelectorAll('tr > :last-child')].map(c => box(c).right);
      scroller.scrollLeft = 0;
      if (Math.abs(after - before) > 1) problems.push(`${name}: the first column scrolls away`);
      if (Math.max(...end) > box(scroller).right + 1) problems.push(`${name}: its last column cannot be scrolled into view`);
    }
  }
  for (const svg of [...root.querySelectorAll('svg')].filter(shown)) {
    const s = box(svg);
    out(`picture ${svg.getAttribute('aria-label') || ''}`, s.right);
    for (const t of svg.querySelectorAll('text')) {
      const b = box(t);
      if (b.width && (b.left < s.left - 0.5 || b.right > s.right + 0.5 || b.top < s.top - 0.5 || b.bottom > s.bottom + 0.5))
        problems.push(`label outside its picture: "${t.textContent}"`);
    }
  }
  for (const img of [...root.querySelectorAll('img')].filter(shown)) out(`image ${img.className}`, box(img).right);
  const ctx = document.createElement('canvas').getContext('2d');
  const room = (el) => { const st = getComputedStyle(el); ctx.font = st.font;
    return el.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight); };
  if (!options) return problems;
  for (const select of [...root.querySelectorAll('select')].filter(shown)) {
    const free = room(select);
    for (const option of select.options) {
      const need = ctx.measureText(option.textContent).width;
      if (need > free + 0.5) problems.push(`option cut: "${option.textContent}" (${need.toFixed(0)} of ${free.toFixed(0)} px)`);
    }
  }
  for (const input of [...root.querySelectorAll('input[placeholder]')].filter(shown)) {
    if (input.placeholder && ctx.measureText(input.placeholder).width > room(input) + 0.5)
      problems.push(`placeholder cut: "${input.placeholder}" (room ${room(input).toFixed(0)} px)`);
  }
  return problems;
}"""


def cut_problems(locator: Any, options: bool = True) -> list[str]:
    """Tables, pictures, labels and (``options``) dropdown options and placeholders under ``locator`` that a
    person sees cut."""
    return locator.evaluate(_CUT_JS, options)


# The layouts a person meets: JupyterLab with its file browser open at 900 px (a laptop) and 1,400 px, and a
# 700 px window without it (as narrow as Colab's notebook column gets): (width, file browser open).
LAYOUTS = [(900, True), (1400, True), (700, False)]


def show_file_browser(page: Any, visible: bool) -> None:
    """Open or close JupyterLab's file browser (its sidebar tab toggles it)."""
    panel = page.locator("#filebrowser")
    if panel.is_visible() != visible:
        page.locator('.jp-SideBar [data-id="filebrowser"]').click()
    panel.wait_for(state="visible" if visible else "hidden")
    page.wait_for_timeout(300)  # the notebook re-lays out its panel

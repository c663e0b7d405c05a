"""05_explore in a real browser: JupyterLab on localhost, headless Debian Chromium driven by Playwright.

Runs every cell of a parameterised copy of notebooks/05_explore.ipynb (two tiny random-init
checkpoints, the embedded sample's frames), moves the frame slider and checks the displayed image
changed and the metrics table shows the new frame's numbers, then clicks the picture and checks
the pixel readout follows. Screenshots and the server log go to test-artifacts/browser/. Skipped
only when Chromium (or Playwright) is missing outside CI; with CI set, a missing browser fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

from _tiny_checkpoint import tiny_checkpoint
from depthlib.figures.explorer import Layout

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("DEPTHLIB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOK = ROOT / "notebooks" / "05_explore.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# JupyterLab settings that keep the news/update toast from covering the screenshots.
DATA = ("densedepth", "data/sample", "test")  # (source, path, split) the notebook explores here
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False}}


def _require_browser() -> None:
    """Skip (developer machine) or fail (CI) when the browser stack is missing."""
    problems = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package playwright is not installed (pip install -e '.[dev]')")
    if problems:
        msg = "browser test needs: " + "; ".join(problems) + ". Never `playwright install`: the system Chromium is used."
        if os.environ.get("CI"):
            pytest.fail(msg + " CI is set, so this is a failure, not a skip.")
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parameterised_notebook(folder: Path) -> Path:
    """Write 05_explore with papermill's injected parameters (tiny checkpoints, figures in folder)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    params = {"current": str(tiny_checkpoint(folder / "current.pt", seed=0)),
              "previous": str(tiny_checkpoint(folder / "previous.pt", seed=1)),
              "data_source": DATA[0], "data_path": DATA[1], "data_split": DATA[2],  # no prepared file needed
              "figure_dir": str(folder / "figures"), "device": "cpu", "frame": 0}
    # The pair papermill's execute_notebook uses: the loader adds the metadata parameterising needs.
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), params)
    out = folder / NOTEBOOK.name
    nbformat.write(nb, out)
    return out


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A JupyterLab server on a random free localhost port with a token, serving tmp_path; shut down after."""
    _require_browser()
    nb = _parameterised_notebook(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter"
    settings = home / "lab-settings"
    for key, value in LAB_SETTINGS.items():
        ext, name = key.rsplit("/", 1)
        (settings / ext).mkdir(parents=True, exist_ok=True)
        (settings / ext / name).write_text(json.dumps(value))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               IPYTHONDIR=str(home / "ipython"), MPLBACKEND="Agg",
               # the kernel runs in tmp_path: make it import this checkout's depthlib, not another installed one
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
           "--allow-root", "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True",
           "--LabApp.extension_manager=readonly", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log_path = tmp_path / "jupyterlab.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start on port {port}:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": f"{base}/lab/tree/{nb.name}?token={token}", "notebook": nb, "folder": tmp_path}
    finally:
        try:  # asks the server to stop its kernels and exit
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).read()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / "jupyterlab.log")


_IMAGE_DIGEST = """async () => {
  const img = document.querySelector('.widget-image');
  if (!img || !img.src) return null;
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, b => b.toString(16).padStart(2, '0')).join('') + ':' + bytes.length;
}"""


def test_explore_notebook_in_chromium(lab: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(lab["folder"] / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            _drive(page, lab)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "99_failure.png"), full_page=True)
            raise
        finally:
            ctx.close()


def _wait_for_new_image(page: Any, before: str, timeout: float) -> str:
    """Poll the displayed image's digest until it differs from `before` (the kernel re-renders on release)."""
    deadline = time.monotonic() + timeout
    while True:
        now = page.evaluate(_IMAGE_DIGEST)
        if now and now != before:
            return str(now)
        if time.monotonic() > deadline:
            raise AssertionError(f"the displayed image did not change within {timeout:.0f} s of moving the slider")
        page.wait_for_timeout(250)


def _readout_xy(page: Any) -> tuple[int, int]:
    """The pixel the readout reports: its "<b>(x, y)</b>"."""
    text = page.locator(".widget-html b").first.inner_text().strip("() ")
    x, y = (int(v) for v in text.split(","))
    return x, y


def _one_line_at_1000_px(page: Any) -> None:
    """Issue 25 trial, a 1000 px window: the pixel readout wrapped (and was clipped), the metrics caption wrapped, and
    the depth-range slider was ~70 px wide with its value box cut off."""
    page.set_viewport_size({"width": 1000, "height": 900})
    page.wait_for_timeout(1000)
    tops = page.evaluate("""() => { const r = [...document.querySelectorAll('.widget-html')].find(e => e.querySelector('b'));
      return [...r.querySelectorAll('span')].flatMap(s => [...s.getClientRects()].map(x => Math.round(x.top))); }""")
    assert tops and len(set(tops)) == 1, f"the pixel readout takes {len(set(tops))} lines at 1000 px: {tops}"
    caption = page.evaluate("""() => { const c = document.querySelector('.widget-html caption');
      return [c.getBoundingClientRect().height, parseFloat(getComputedStyle(c).lineHeight) || 20]; }""")
    assert caption[0] < 1.5 * caption[1], f"the metrics caption wraps: {caption[0]} px tall, lines of {caption[1]} px"
    slider = page.locator(".widget-inline-hbox:has(label:text-is('depth (m)'))").first
    assert slider.bounding_box()["width"] >= 400, slider.bounding_box()
    readout = slider.locator(".widget-readout").first
    assert page.evaluate("(e) => e.scrollWidth <= e.clientWidth + 1", readout.element_handle()), "the range's value box is cut"
    page.screenshot(path=str(ARTIFACTS / "05_narrow_1000px.png"))


def _expected_scores(lab: dict[str, Any], frame: int) -> list[str]:
    """The metrics the explorer's table must show for `frame` (both checkpoints), computed here."""
    from depthlib.notebook.widgets import explore

    folder = lab["folder"]
    ex = explore(source=DATA[0], path=DATA[1], split=DATA[2], current=folder / "current.pt",
                 previous=folder / "previous.pt", frame=frame, device="cpu")
    return [f"{ex.metrics(lb, frame)[k]:.4f}" for lb in ex.labels_shown() for k in ("delta1", "abs_rel", "rmse")]


def _drive(page: Any, lab: dict[str, Any]) -> None:
    page.goto(lab["url"])
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-NotebookPanel')", timeout=180_000)
    kernel = page.evaluate("""async () => {
      const panel = window.jupyterapp.shell.currentWidget;
      await panel.context.ready; await panel.sessionContext.ready;
      return panel.sessionContext.session.kernel.name; }""")
    assert kernel == "python3"
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # The last cell prints this once the explorer has rendered, switched frames and saved its figure.
    page.locator(".jp-OutputArea-output", has_text="cached computations").first.wait_for(timeout=600_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()
    assert (lab["folder"] / "figures" / "05_explore.png").stat().st_size > 0

    image = page.locator(".widget-image").first
    image.scroll_into_view_if_needed()
    page.wait_for_function("() => { const i = document.querySelector('.widget-image'); return i && i.complete && i.naturalWidth > 0; }")
    before = page.evaluate(_IMAGE_DIGEST)
    assert before, "the explorer's image widget has no picture"
    page.screenshot(path=str(ARTIFACTS / "01_executed.png"))
    caption = page.locator(".widget-html caption").first.inner_text()  # "frame 00000, ..."

    handle = page.locator(".widget-slider .noUi-handle").first  # the frame slider (first slider)
    handle.focus()
    page.keyboard.press("ArrowRight")
    after = _wait_for_new_image(page, before, timeout=180.0)
    table = page.locator(".widget-html table").first.inner_text()  # read at once: it must not trail the picture
    assert page.locator(".widget-html caption").first.inner_text() != caption
    for value in _expected_scores(lab, frame=1):  # frame 1's numbers, as the library computes them
        assert value in table, f"{value} not in the metrics table after the slider move:\n{table}"
    image.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "02_slider_moved.png"))

    # A click on the picture reads the depth at the frame pixel under it (2nd panel, panel pixel (100, 60)).
    box = image.bounding_box()
    layout = Layout(h=240, w=320, rows=2, frame_hw=(480, 640))
    fx, fy = (320 + 100.5) / layout.size[1], 60.5 / layout.size[0]
    centre = _readout_xy(page)
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    x, y = layout.pixel_at(fx, fy)  # (201, 121); the picture is shown scaled, so a click lands within a few pixels
    deadline = time.monotonic() + 60
    while (got := _readout_xy(page)) == centre and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert abs(got[0] - x) <= 3 and abs(got[1] - y) <= 3, f"clicked near frame pixel {(x, y)}, the readout says {got}"
    page.screenshot(path=str(ARTIFACTS / "03_clicked.png"))

    # The pixel readout follows the x box.
    x_box = page.locator(".widget-inline-hbox:has(label:text-is('x (px)')) input").first
    x_box.fill("5")
    x_box.press("Enter")
    page.locator(".widget-html", has_text="(5, ").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "04_pixel_readout.png"))

    # A known distance at that pixel (issue #22): typed, added, and the picture and residual table follow it.
    shown = page.evaluate(_IMAGE_DIGEST)
    distance = page.locator(".widget-inline-hbox:has(label:text-is('distance (m)')) input").first
    distance.fill("2.5")
    page.locator("button", has_text="add known point").first.click()
    page.locator(".widget-html", has_text="calibrated from 1 point").first.wait_for(timeout=60_000)
    _wait_for_new_image(page, shown, timeout=60.0)
    assert "2.5" in page.locator(".widget-html pre").first.inner_text()  # the residual table names the metres given
    page.screenshot(path=str(ARTIFACTS / "04b_known_point.png"))
    _one_line_at_1000_px(page)
    digest = hashlib.sha256((before + after).encode()).hexdigest()[:12]
    (ARTIFACTS / "result.txt").write_text(f"before {before}\nafter {after}\nrun {digest}\n")

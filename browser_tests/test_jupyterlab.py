"""Every chapter as a learner sees it in JupyterLab (what Binder opens), in headless Chromium.

JupyterLab, with jupyterlab-myst from requirements.txt, runs on loopback. Each notebook of
_toc.yml is opened (and three chapters of the Chinese edition, ``zh/notebooks/``), and the
check asserts that:

* every cell is on the page (the notebook is rendered without windowing);
* no raw MyST markup is visible: no ``{exercise}``, ``{solution-start}``, no fence opening
  with a ``{directive}``, no ``(label)=`` line;
* the code the chapter shows is on the page: each ``def``/``class`` line in a code cell or in
  a shown helper's source (a cell output) appears in the rendered text.

A screenshot of each chapter is saved under ``_build/screenshots/lab__<notebook>.png``.
No kernel is started: the stored outputs are what a learner sees before running anything.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from browser_tests.common import PAGES, ROOT, SHOTS, ZH_PAGES, raw_myst

# Every English chapter, and three of the Chinese edition's (generated from the same cells).
NOTEBOOKS = [page for page in PAGES if page.startswith("notebooks/")]
NOTEBOOKS += [
    page for page in ZH_PAGES if page.startswith(("zh/notebooks/01-", "zh/notebooks/09-", "zh/notebooks/16-"))
]
DEFINITION = re.compile(r"(?m)^\s*(?:async\s+)?(def|class)\s+([A-Za-z_]\w*)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def lab():
    """JupyterLab on a free loopback port, with windowing off and no kernel started on open."""
    settings = Path(tempfile.mkdtemp(prefix="book-lab-settings-"))
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    # Windowing renders only the cells in view; the check needs every cell in the page.
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        "--ServerApp.port_retries=0",
        "--LabApp.news_url=",
        "--ServerApp.log_level=WARN",
        # Checkpoints go to the temporary folder, not beside the notebooks.
        f"--FileCheckpoints.checkpoint_dir={settings / 'checkpoints'}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = dict(
        os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(settings / "workspaces")
    )
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                server.kill()
                pytest.fail(f"JupyterLab did not start:\n{log.read().decode(errors='replace')[-3000:]}")
            time.sleep(0.5)
    try:
        yield base, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
        shutil.rmtree(settings, ignore_errors=True)


def _shown_definitions(notebook: dict) -> list[str]:
    """Names defined in unfolded code cells, or in a shown helper's source (a text/markdown output)."""
    names = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        # A solution's code is folded on purpose (source_hidden), until the learner opens it.
        folded = cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False)
        texts = [] if folded else ["".join(cell["source"])]
        for output in cell.get("outputs", []):
            markdown = output.get("data", {}).get("text/markdown")
            if markdown:
                texts.append("".join(markdown))
        for text in texts:
            names += [match.group(2) for match in DEFINITION.finditer(text)]
    return names


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_chapter_in_jupyterlab(page, lab, browser):
    base, token = lab
    path = ROOT / f"{page}.ipynb"
    notebook = json.loads(path.read_text())
    edition = "zh-" if page.startswith("zh/") else ""
    workspace = f"check-{edition}{path.stem}"
    browser.get(f"{base}/lab/workspaces/{workspace}/tree/{page}.ipynb?reset&token={token}")

    cells = len(notebook["cells"])
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
    deadline = time.monotonic() + 90
    count, text, began = 0, "", time.monotonic()
    while time.monotonic() < deadline:
        # Every cell attached, and the rendered text unchanged for a second: MyST has finished.
        count = browser.execute_script(
            f"const p = document.querySelector('{panel}'); return p ? p.querySelectorAll('.jp-Cell').length : 0"
        )
        previous, text = (
            text,
            browser.execute_script(f"const p = document.querySelector('{panel}'); return p ? p.innerText : ''"),
        )
        if count >= cells and text and text == previous:
            break
        time.sleep(1.0)
    assert count >= cells, f"{page}: {count} of {cells} cells on the page"
    print(f"{page}: rendered in {time.monotonic() - began:.1f} s")

    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"lab__{edition}{path.stem}.txt").write_text(text)
    raw = raw_myst(text)
    assert not raw, f"{page}: raw MyST markup visible in JupyterLab: {raw[:10]}"

    missing = [
        name for name in _shown_definitions(notebook) if not re.search(rf"(def|class)\s+{re.escape(name)}\b", text)
    ]
    assert not missing, f"{page}: shown code missing from the page: {missing}"

    height = browser.execute_script(
        "const n = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');"
        "return n ? Math.min(n.scrollHeight + 250, 16000) : 900"
    )
    browser.set_window_size(1280, max(900, height))
    time.sleep(0.5)
    browser.save_screenshot(str(SHOTS / f"lab__{edition}{path.stem}.png"))
    browser.set_window_size(1280, 900)

"""The rendered book, checked in a real browser (headless Chromium): `make check-html`.

For every page of the built book (`_build/html`, served on loopback), this checks that:

* it loads, and shows its title;
* a chapter (a notebook page) shows code outputs, and every image on it has a non-zero
  natural size (it really loaded and decoded);
* a chapter has the launch button (Binder);
* the browser console holds no errors, except failed loads of external URLs (this machine
  is offline: the MathJax and widget scripts come from CDNs);
* no interactive widget is drawn twice;
* no MyST markup is left unrendered in the text;
* it links to the same page of the other edition (English, 中文), and that page exists.

The Chinese edition's pages (``zh/``, built by ``make book`` into ``_build/html/zh``) get the
same checks, and the CJK font their screenshots need must be installed.

A screenshot of each page is saved under `_build/screenshots/`.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
import urllib.request
from urllib.parse import urlparse

import pytest

from browser_tests.common import HTML, PAGES, SHOTS, ZH_PAGES, raw_myst


@pytest.fixture(scope="session")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("_build/html is missing: build the book first (make book)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="book-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on stderr
        pass


def external_failure(message: str, origin: str) -> bool:
    """True for a console error about loading a URL on another host (we are offline)."""
    urls = re.findall(r"https?://[^\s'\"]+", message)
    return bool(urls) and all(not url.startswith(origin) for url in urls)


def test_cjk_font_installed():
    """Without a CJK font, Chromium draws the Chinese pages (and the Chinese terms) as boxes."""
    fc_list = shutil.which("fc-list")
    assert fc_list, "fc-list is missing: install fontconfig (apt-check.txt)"
    families = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    assert families.strip(), "no font covers Chinese: install fonts-noto-cjk (apt-check.txt)"


@pytest.mark.parametrize("page", PAGES + ZH_PAGES)
def test_page(page, server, browser):
    url = f"{server}/{page}.html"
    browser.get(url)
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (document.readyState === 'complete') done(); else window.addEventListener('load', () => done());"
    )

    title = browser.execute_script(
        "const h = document.querySelector('main h1, article h1'); return h ? h.innerText : ''"
    )
    assert title.strip(), f"{page}: no h1 title"
    assert browser.title.strip(), f"{page}: empty <title>"

    images = browser.execute_script(
        "return Array.from(document.querySelectorAll('article img, main img')).map("
        "i => [i.currentSrc || i.src, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    local = [img for img in images if img[0].startswith((server, "data:"))]
    broken = [img[0][:80] for img in local if not (img[1] and img[2] > 0 and img[3] > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"

    article_text = browser.execute_script(
        "const a = document.querySelector('article') || document.body; const c = a.cloneNode(true);"
        "c.querySelectorAll('pre, code, .cell_output').forEach(e => e.remove()); return c.innerText"
    )
    raw = raw_myst(article_text)
    assert not raw, f"{page}: raw MyST markup on the page: {raw[:10]}"

    other = browser.execute_script(
        "const a = document.querySelector('a.other-edition-link'); return a ? [a.href, a.lang] : null"
    )
    assert other, f"{page}: no link to the other edition"
    counterpart = page.removeprefix("zh/") if page.startswith("zh/") else f"zh/{page}"
    assert other[0] == f"{server}/{counterpart}.html", f"{page}: links to {other[0]}, not {counterpart}"
    with urllib.request.urlopen(other[0], timeout=10) as response:
        assert response.status == 200, f"{page}: the other edition's page {other[0]} is missing"

    if page.removeprefix("zh/").startswith("notebooks/"):
        outputs = browser.execute_script("return document.querySelectorAll('.cell_output').length")
        assert outputs > 0, f"{page}: no code outputs shown"
        assert any(img[0].startswith("data:") or "/_images/" in img[0] for img in local), f"{page}: no plot"
        launch = browser.execute_script(
            "return Array.from(document.querySelectorAll('a')).filter(a => a.href.includes('mybinder.org')).length"
        )
        assert launch >= 1, f"{page}: no Binder launch button"

    # A widget is drawn once: one view placeholder per widget output, never two for one model.
    views = browser.execute_script(
        "return Array.from(document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]'))"
        ".map(s => JSON.parse(s.textContent).model_id)"
    )
    assert len(views) == len(set(views)), f"{page}: a widget is drawn twice"
    error_texts = browser.execute_script(
        "return Array.from(document.querySelectorAll('.jupyter-widgets, .widget-area'))"
        ".map(e => e.innerText).filter(t => /error/i.test(t))"
    )
    assert not error_texts, f"{page}: a widget shows an error: {error_texts}"

    origin = f"{urlparse(server).scheme}://{urlparse(server).netloc}"
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    unexpected = [m for m in errors if not external_failure(m, origin)]
    assert not unexpected, f"{page}: console errors: {unexpected}"

    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return Math.min(document.documentElement.scrollHeight, 16000)")
    browser.set_window_size(1280, max(900, height))
    browser.save_screenshot(str(SHOTS / (page.replace("/", "__") + ".png")))
    browser.set_window_size(1280, 900)

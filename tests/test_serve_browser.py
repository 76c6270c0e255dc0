"""The page of `fmnist serve` in a real browser (Playwright driving the system's Chromium, headless):
pick an image, see its label and the 28×28 image the model saw; pick a broken file, see the error.

CI (CI=true) must run it: there a missing browser fails the test. Elsewhere it is skipped with the
reason. Playwright never downloads a browser here: it drives /usr/bin/chromium (`make test` installs
Debian's chromium package when it is missing and it runs as root).
"""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image
from test_serve import start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
         "--disable-gpu", "--disable-dev-shm-usage"]


def _browser_or_skip():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    return sync_playwright


def test_the_page_predicts_a_picked_image_and_shows_errors(serve_models, fashion, tmp_path):
    sync_playwright = _browser_or_skip()
    picture, broken = tmp_path / "pullover.png", tmp_path / "broken.png"
    Image.fromarray(fashion.test.images[1]).save(picture)
    broken.write_bytes(picture.read_bytes()[:60])
    process, url = start_server(serve_models[1])
    try:
        with sync_playwright() as playwright:
            args = FLAGS + (["--no-sandbox"] if os.geteuid() == 0 else [])
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            try:
                page = browser.new_page()
                page.goto(f"{url}/")
                page.wait_for_function("document.querySelectorAll('#model option').length > 0")
                page.set_input_files("#files", str(picture))
                label = page.locator(".result .label").first
                label.wait_for(timeout=20_000)
                assert label.inner_text().split(" (")[0] in fashion.classes
                seen = page.locator(".result img.seen").first
                assert seen.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [28, 28]
                assert page.locator(".result .bar").count() == 3
                page.set_input_files("#files", str(broken))
                error = page.locator("#error")
                error.wait_for(state="visible", timeout=20_000)
                assert error.inner_text().startswith("Error 422: broken.png: truncated or corrupt image")
                assert "truncated or corrupt image" in page.locator(".result .failed").last.inner_text()
                # the keyboard alone: Tab reaches the model selector first, then the options, then the drop
                # zone, where Enter or Space opens the file chooser (counted here, and kept from opening: a
                # headless chooser's event is not reliably delivered)
                page.evaluate("document.activeElement && document.activeElement.blur()")
                focused = []
                for _ in range(4):
                    page.keyboard.press("Tab")
                    focused.append(page.evaluate("document.activeElement.id"))
                assert focused == ["model", "top-k", "invert", "drop"]
                page.evaluate("window.chooserOpened = 0; document.getElementById('files').addEventListener("
                              "'click', event => { window.chooserOpened += 1; event.preventDefault(); })")
                page.keyboard.press("Enter")
                page.keyboard.press(" ")
                page.keyboard.press("a")  # any other key does nothing
                assert page.evaluate("window.chooserOpened") == 2
                page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            finally:
                browser.close()
    finally:
        code, stderr = stop_server(process)
    assert code == 0, stderr
    assert (tmp_path / "page.png").stat().st_size > 0

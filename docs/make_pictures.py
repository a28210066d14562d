"""Regenerate the pictures in docs/ from the code: the README's pipeline figure, a screenshot of
the HTML report and one of the app. Needs the test extras and Debian's chromium +
chromium-driver (``make setup-test browser``); runs offline in about a minute.

    python docs/make_pictures.py            # writes docs/demo_pipeline.png, report.png, app.png
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from tests.browser import chromium, page_height  # noqa: E402


def demo_report(folder: Path) -> Path:
    """``hrcam demo`` into ``folder``; its chelsea pipeline figure becomes the README picture."""
    subprocess.run([sys.executable, "-m", "hrcam", "demo", "-o", str(folder)], check=True, cwd=ROOT)
    pipeline = next((folder / "images").glob("*chelsea*/pipeline.*"))  # <n>-chelsea-<hash>/
    Image.open(pipeline).convert("RGB").save(DOCS / "demo_pipeline.png", optimize=True)
    return folder / "index.html"


def screenshot_report(index: Path) -> None:
    driver = chromium(1400, 1000)
    try:
        driver.get(index.as_uri())
        driver.set_window_size(1400, min(page_height(driver), 1800))
        driver.save_screenshot(str(DOCS / "report.png"))
    finally:
        driver.quit()


def screenshot_app(images: list[Path]) -> None:
    from hrcam import load_model
    from hrcam.app import ExplainerSession, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page, url = launch(ExplainerSession(load_model()), port=port, examples=images, block=False)
    driver = chromium(1400, 1100)
    try:
        driver.get(url)
        field = WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#hrcam-image input[type=file]")
        )
        field.send_keys(str(next(p for p in images if p.stem.endswith("chelsea"))))
        WebDriverWait(driver, 60).until(
            lambda d: "cat" in d.find_element(By.CSS_SELECTOR, "#hrcam-caption").text
        )
        for button in driver.find_elements(By.CSS_SELECTOR, "button"):
            if "refinement options" in button.text:
                button.click()
        driver.save_screenshot(str(DOCS / "app.png"))
    finally:
        driver.quit()
        page.close()


def main() -> None:
    from hrcam.io import write_demo_images

    work = Path(tempfile.mkdtemp(prefix="hrcam-pictures-"))
    try:
        screenshot_report(demo_report(work / "demo"))
        screenshot_app(write_demo_images(work / "images"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name in ("demo_pipeline.png", "report.png", "app.png"):
        print(f"docs/{name}: {Image.open(DOCS / name).size}")


if __name__ == "__main__":
    main()

"""The app in a real browser: upload, maps, another option, another class, a bad upload.

Headless Chromium (``tests/browser.py``) drives the page served on 127.0.0.1 by the test
process itself; every wait is bounded (60 s) and the server stops at the end of the module.
"""

from __future__ import annotations

import io
import os
import socket
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from ..browser import chromium

pytest.importorskip("gradio")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from hrcam import load_model  # noqa: E402
from hrcam.app import ExplainerSession, launch  # noqa: E402
from hrcam.io import write_demo_images  # noqa: E402

WAIT = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory):
    return write_demo_images(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def app_url(demo_images):
    session = ExplainerSession(load_model("default"))
    page, url = launch(session, port=_free_port(), examples=demo_images, block=False)
    try:
        yield url
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser(app_url):
    driver = chromium()
    try:
        driver.get(app_url)
        yield driver
    finally:
        driver.quit()


def _picture(driver, element_id: str) -> tuple[str, np.ndarray]:
    """(src, pixels) of the image an output shows, fetched from the app as the browser does."""
    src = driver.find_element(By.CSS_SELECTOR, f"#{element_id} img").get_attribute("src")
    with urllib.request.urlopen(src, timeout=WAIT) as response:
        return src, np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def _wait_for_new(driver, element_id: str, old_src: str | None) -> None:
    def ready(d):
        found = d.find_elements(By.CSS_SELECTOR, f"#{element_id} img")
        return found and found[0].get_attribute("src") not in (None, "", old_src)

    WebDriverWait(driver, WAIT).until(ready)


def _upload(driver, path) -> None:
    field = WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#hrcam-image input[type=file]")
    )
    field.send_keys(str(path))


def _caption(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#hrcam-caption").text


def test_the_app_answers_on_localhost_only(app_url):
    assert app_url.startswith("http://127.0.0.1:")


def test_upload_explain_change_an_option_and_a_class(browser, demo_images, tmp_path):
    coffee = next(p for p in demo_images if p.stem.endswith("coffee"))
    _upload(browser, coffee)
    _wait_for_new(browser, "hrcam-refined", None)
    WebDriverWait(browser, WAIT).until(lambda d: "espresso" in _caption(d))
    low_src, low = _picture(browser, "hrcam-low")
    refined_src, refined = _picture(browser, "hrcam-refined")
    assert low.shape == refined.shape and low.std() > 10

    # Another refinement option: the refined map changes, the low-res map does not.
    for button in browser.find_elements(By.CSS_SELECTOR, "button"):
        if "refinement options" in button.text:
            button.click()
            break
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#hrcam-merge input[value=multiply]")
    )
    browser.find_element(By.CSS_SELECTOR, "#hrcam-merge input[value=multiply]").click()
    _wait_for_new(browser, "hrcam-refined", refined_src)
    _, multiplied = _picture(browser, "hrcam-refined")
    assert np.abs(multiplied.astype(int) - refined.astype(int)).mean() > 1
    WebDriverWait(browser, WAIT).until(lambda d: "merge: segment × base" in _caption(d))
    _, low_again = _picture(browser, "hrcam-low")
    np.testing.assert_array_equal(low_again, low)

    # Another class from the top-5.
    browser.find_element(
        By.CSS_SELECTOR, "#hrcam-top5 button[data-testid='cup-confidence-set']"
    ).click()
    WebDriverWait(browser, WAIT).until(lambda d: _caption(d).startswith("cup"))

    shot = tmp_path / "app.png"
    browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.shape[0] > 500 and pixels.std() > 20  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 200  # pictures, not flat colour


def test_a_bad_upload_is_an_error_in_the_page_and_the_app_goes_on(browser, demo_images, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"these are not pixels")
    _upload(browser, bad)
    WebDriverWait(browser, WAIT).until(
        lambda d: (
            "not a recognised image file" in d.find_element(By.CSS_SELECTOR, "#hrcam-status").text
        )
    )
    assert (
        "notes: not a recognised image file"
        in browser.find_element(By.CSS_SELECTOR, "#hrcam-status").text
    )
    # ... and a good image afterwards is explained as usual.
    chelsea = next(p for p in demo_images if p.stem.endswith("chelsea"))
    time.sleep(0.5)
    _upload(browser, chelsea)
    WebDriverWait(browser, WAIT).until(lambda d: "cat" in _caption(d))


def test_a_volume_uploaded_as_a_file_shows_slices_and_sliders(tmp_path):
    nib = pytest.importorskip("nibabel")
    import torch

    from hrcam import Explainer, create_backbone

    torch.manual_seed(0)
    net = create_backbone(
        "tiny_densenet", num_classes=3, spatial_dims=3, in_chans=1, input_size=32, growth_rate=4
    )
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 10, (32, 32, 32)).astype(np.float32)
    volume[8:18, 10:20, 12:22] += 200
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    page, url = launch(ExplainerSession(Explainer(net.eval())), port=_free_port(), block=False)
    driver = chromium()
    try:
        driver.get(url)
        field = WebDriverWait(driver, WAIT).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#hrcam-scan input[type=file]")
        )
        field.send_keys(str(path))
        _wait_for_new(driver, "hrcam-refined", None)
        WebDriverWait(driver, WAIT).until(lambda d: "through voxel" in _caption(d))
        slider = driver.find_element(By.CSS_SELECTOR, "#hrcam-slice0")
        assert slider.is_displayed()
        _, refined = _picture(driver, "hrcam-refined")
        assert refined.shape[0] == refined.shape[1] > 100  # the 2×2 grid of slices
        if os.environ.get("HRCAM_SCREENSHOT"):
            driver.save_screenshot(os.environ["HRCAM_SCREENSHOT"])
    finally:
        driver.quit()
        page.close()

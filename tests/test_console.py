"""The web console end to end in headless Chromium (Debian's package; never a downloaded browser)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.server import Server, running_server

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as until  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (.ci/run does)")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "data") as running:
        yield running


ARTIFACTS = Path(os.environ.get("VISAGE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")) / "console"


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    """Each console page as the test saw it, for people reviewing the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait_text(driver: webdriver.Chrome, selector: str, text: str, timeout: float = 60) -> None:
    WebDriverWait(driver, timeout).until(until.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text))


def raise_alert(data_dir: Path, gallery_name: str, external_id: str) -> None:
    """A watchlist alert written to the server's database from another process."""
    from datetime import UTC, datetime

    from visage import Settings
    from visage.gallery.api import Gallery
    from visage.gallery.sightings_store import SightingStore

    with Gallery(Settings(data_dir=data_dir)) as gallery:
        record = gallery.get(gallery_name)
        person = gallery.person(gallery_name, external_id)
        SightingStore(gallery.store.db, gallery.store.cipher).add_alert("camera-7", 3, record.id, person.id, 0.91,
                                                                        0.6, 12.5, datetime.now(UTC))


def test_enrol_then_search_through_the_console(browser: webdriver.Chrome, server: Server, tmp_path: Path,
                                               astronaut_bytes: bytes) -> None:
    photo, blank = tmp_path / "eileen.jpg", tmp_path / "wall.png"
    photo.write_bytes(astronaut_bytes)
    buffer = io.BytesIO()
    Image.fromarray(np.full((120, 160, 3), 210, np.uint8)).save(buffer, format="PNG")
    blank.write_bytes(buffer.getvalue())

    browser.get(f"{server.base}/")
    assert browser.current_url.endswith("/console/")
    unlabeled = browser.execute_script(
        "return [...document.querySelectorAll('input, select')].filter(e => !e.labels || !e.labels.length)"
        ".map(e => e.id)")
    assert unlabeled == []  # every field has a label

    screenshot(browser, "1-sign-in")
    key_field = browser.find_element(By.ID, "api-key")
    key_field.send_keys("vsg_wrong_key")
    key_field.submit()
    wait_text(browser, "#error", "unknown or revoked")
    key_field.clear()
    key_field.send_keys(server.admin_key)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    WebDriverWait(browser, 30).until(until.visibility_of_element_located((By.ID, "view-galleries")))

    browser.find_element(By.ID, "new-gallery").send_keys("lobby")
    browser.find_element(By.CSS_SELECTOR, "#gallery-form button").click()
    wait_text(browser, "#status", "Gallery lobby created")

    browser.find_element(By.ID, "enroll-id").send_keys("eileen")
    browser.find_element(By.ID, "enroll-name").send_keys("Eileen Collins")
    browser.find_element(By.ID, "enroll-images").send_keys(f"{photo}\n{blank}")
    browser.find_element(By.CSS_SELECTOR, "#enroll-form button").click()
    wait_text(browser, "#error", "needs a consent record")  # the lobby has no gallery-wide legal basis
    browser.find_element(By.ID, "enroll-consent-evidence").send_keys("signed form 2026-114")
    browser.find_element(By.CSS_SELECTOR, "#enroll-form button").click()
    wait_text(browser, "#enroll-result", "1 photo(s) enrolled")
    assert "wall.png: no face found" in browser.find_element(By.CSS_SELECTOR, "#enroll-result .rejected").text
    wait_text(browser, "#people-table tbody", "Eileen Collins")
    assert "consent" in browser.find_element(By.CSS_SELECTOR, "#people-table tbody").text
    screenshot(browser, "2-galleries-and-people")

    browser.find_element(By.CSS_SELECTOR, "#nav [data-view=search]").click()
    Select(browser.find_element(By.ID, "search-gallery")).select_by_value("lobby")
    browser.find_element(By.ID, "search-image").send_keys(str(photo))
    browser.find_element(By.ID, "search-purpose").send_keys("console test")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait_text(browser, "#search-faces", "Face 1")
    best = browser.find_element(By.CSS_SELECTOR, "#search-faces .candidate")
    assert "eileen" in best.text and "match" in best.get_attribute("class").split()
    assert browser.execute_script("return document.getElementById('search-canvas').width") == 512
    screenshot(browser, "3-search-by-photo")

    browser.find_element(By.CSS_SELECTOR, "#nav [data-view=audit]").click()
    wait_text(browser, "#audit-table tbody", "console test")
    audit_text = browser.find_element(By.ID, "audit-table").text
    assert "identify" in audit_text and "enroll" in audit_text and "gallery.create" in audit_text
    screenshot(browser, "4-audit-log")

    browser.find_element(By.CSS_SELECTOR, "#nav [data-view=report]").click()
    wait_text(browser, "#report-table tbody", "console test")  # the search's purpose, in its weekly row
    assert "1 searches, 1 matches" in browser.find_element(By.ID, "report-totals").text
    totals = browser.find_element(By.ID, "report-totals").text
    assert "1 enrolments" in totals and "1 operations refused" in totals  # the enrolment without consent
    screenshot(browser, "5-transparency-report")

    browser.find_element(By.CSS_SELECTOR, "#nav [data-view=alerts]").click()
    wait_text(browser, "#alerts-live", "Listening for alerts")
    raise_alert(tmp_path / "data", "lobby", "eileen")  # as a stream job or `visage watch` would, in the same database
    wait_text(browser, "#alerts-table tbody", "Eileen Collins (eileen)", timeout=20)
    assert "camera-7" in browser.find_element(By.ID, "alerts-table").text
    screenshot(browser, "6-alerts-live")

    browser.find_element(By.CSS_SELECTOR, "#nav [data-view=galleries]").click()
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Erase eileen']").click()
    WebDriverWait(browser, 10).until(until.alert_is_present()).accept()
    wait_text(browser, "#people-page", "Nobody enrolled")
    severe = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    # Only the refusals the test provoked (the wrong key, the enrolment without consent), no script errors.
    assert all(" 401 " in message or " 422 " in message for message in severe), severe

"""The dashboard in headless Chromium (Debian's chromium and chromium-driver,
driven by selenium): log in, live values, MQTT from the page, settings and
an upload.  Screenshots go to build/."""

import hashlib
import os
import shutil
import tempfile

import httpx
import pytest

from support.dashboard import PASSWORD, Dashboard
from support.mqtt import Paho
from support.paths import ROOT

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("Debian's chromium and chromium-driver are not installed "
                "(`make test` installs them)", allow_module_level=True)

SHOTS = os.path.join(ROOT, "build")
FAST = {"device_name": "browser-1", "sample_interval_ms": 200,
        "mqtt_topic_prefix": "devices/browser-1", "telemetry_enabled": True}


@pytest.fixture(scope="module")
def dashboard():
    data = tempfile.mkdtemp(prefix="cym-dash-test-")
    d = Dashboard(os.path.join(data, "data"), dict(FAST))
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="cym-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--user-data-dir=" + profile):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, timeout=15):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def text_of(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def shot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    driver.save_screenshot(os.path.join(SHOTS, "dashboard-%s.png" % name))


def log_in(driver, dashboard, password=PASSWORD):
    driver.get(dashboard.url + "/")
    form = wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed()
                and d.find_element(By.ID, "password"))
    form.send_keys(password)
    driver.find_element(By.ID, "login-button").click()


def ensure_logged_in(driver, dashboard):
    driver.get(dashboard.url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed()
         or d.find_element(By.ID, "dashboard").is_displayed())
    if not driver.find_element(By.ID, "dashboard").is_displayed():
        log_in(driver, dashboard)
    wait(driver, lambda d: d.find_element(By.ID, "dashboard").is_displayed())
    # The live socket is open once the first values arrived.
    wait(driver, lambda d: text_of(d, "transport") != "" and text_of(d, "requests") != "-")


def test_login_refused_then_accepted(dashboard, browser):
    browser.delete_all_cookies()
    log_in(browser, dashboard, "wrong password")
    wait(browser, lambda d: "wrong password" in text_of(d, "login-error"))
    assert not browser.find_element(By.ID, "dashboard").is_displayed()
    shot(browser, "login-refused")
    log_in(browser, dashboard)
    wait(browser, lambda d: d.find_element(By.ID, "dashboard").is_displayed())
    assert browser.find_element(By.ID, "logout").is_displayed()


def test_live_value_changes(dashboard, browser):
    ensure_logged_in(browser, dashboard)
    first = int(text_of(browser, "requests"))
    # Requests from elsewhere show up in the page's next push.
    for _ in range(3):
        assert httpx.get(dashboard.url + "/api/session", timeout=10).status_code == 200
    wait(browser, lambda d: int(text_of(d, "requests")) >= first + 3)
    assert text_of(browser, "transport") == "(WebSocket)"
    assert "dashboard-ui" in text_of(browser, "clients")
    wait(browser, lambda d: "devices/browser-1/metrics" in text_of(d, "topics"))
    shot(browser, "live")


def test_publish_from_the_page_reaches_a_paho_client(dashboard, browser):
    ensure_logged_in(browser, dashboard)
    paho = Paho(dashboard.mqtt_port, client_id="browser-test")
    try:
        paho.sub("devices/test/#")
        topic = browser.find_element(By.ID, "pub-topic")
        topic.clear()
        topic.send_keys("devices/test/cmd")
        payload = browser.find_element(By.ID, "pub-payload")
        payload.clear()
        payload.send_keys("from the browser")
        browser.find_element(By.ID, "pub-button").click()
        wait(browser, lambda d: "published to devices/test/cmd" in text_of(d, "pub-status"))
        wait(browser, lambda d: paho.payloads("devices/test/cmd"))
        assert paho.payloads("devices/test/cmd") == [b"from the browser"]
        # And the other way: paho publishes, the page shows it (filter devices/#).
        paho.pub("devices/test/state", b"seen by the page")
        wait(browser, lambda d: "devices/test/state: seen by the page" in text_of(d, "messages"))
    finally:
        paho.stop()
    shot(browser, "mqtt")


def test_setting_changed_in_the_form_is_saved(dashboard, browser):
    ensure_logged_in(browser, dashboard)
    wait(browser, lambda d: d.find_element(By.ID, "device_name").get_attribute("value") != "")
    name = browser.find_element(By.ID, "device_name")
    name.clear()
    name.send_keys("kitchen-gateway")
    browser.find_element(By.ID, "settings-save").click()
    wait(browser, lambda d: text_of(d, "settings-status") == "saved")
    assert dashboard.settings_file()["device_name"] == "kitchen-gateway"
    # An invalid value is refused by the server and nothing changes.
    interval = browser.find_element(By.ID, "sample_interval_ms")
    interval.clear()
    interval.send_keys("5")
    browser.find_element(By.ID, "settings-save").click()
    wait(browser, lambda d: "not saved" in text_of(d, "settings-status"))
    assert dashboard.settings_file()["sample_interval_ms"] == 200
    wait(browser, lambda d: text_of(d, "device") == "kitchen-gateway")
    shot(browser, "settings")


def test_upload_shows_the_checksum(dashboard, browser, tmp_path):
    ensure_logged_in(browser, dashboard)
    blob = bytes(range(256)) * 100
    path = tmp_path / "firmware-1.2.bin"
    path.write_bytes(blob)
    browser.find_element(By.ID, "upload-file").send_keys(str(path))
    browser.find_element(By.ID, "upload-button").click()
    code = wait(browser, lambda d: d.find_elements(By.ID, "upload-sha256"))
    assert code[0].text == hashlib.sha256(blob).hexdigest()
    assert browser.find_element(By.ID, "upload-progress").get_attribute("value") == "100"
    with open(os.path.join(dashboard.data, "uploads", "firmware-1.2.bin"), "rb") as f:
        assert f.read() == blob
    shot(browser, "upload")

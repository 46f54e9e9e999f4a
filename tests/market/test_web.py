"""Issue 9: the market's web interface in a real browser (Debian's Chromium, headless, driven
by Selenium through Debian's chromedriver; scripts/test.sh installs both).

One walk through the pages a buyer and an admin use: sign in, filter and sort offers, buy
(the preview shows the matched offer and its expected monthly cost first) and use the shown
credentials with boto3, a provider's charts, the admin's onboarding, an invoice and its CSV
download, and a move. Every page must render without console errors; a screenshot of each
is saved under test-artifacts/web/. State-changing requests without the CSRF token are
refused.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.market.conftest import (
    BROKER_PASSWORD,
    BROKER_USER,
    Market,
    Provider,
    s3_for,
    start_provider,
    stop_provider,
)

pytestmark = pytest.mark.timeout(900)
ARTIFACTS = Path(os.environ.get("SL_ARTIFACTS", REPO / "test-artifacts")) / "web"


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver).exists()):
        pytest.fail("Chromium and chromedriver are needed (Debian: apt-get install chromium "
                    "chromium-driver; scripts/test.sh installs them). Never skipped.",
                    pytrace=False)
    return chromium, driver


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Market, Provider,
                                                                     Provider]]:
    base = tmp_path_factory.mktemp("web")
    north = start_provider(base, "north", "eu-north-1", "SE", "0.010", "0.020",
                           extra_args=("--metering-period", "2"))
    south = start_provider(base, "south", "eu-south-1", "IT", "0.030", "0.010",
                           extra_args=("--metering-period", "2"))
    market = Market(base / "market", extra_args=("--probe-interval", "1", "--broker-timeout",
                                                 "10"))
    try:
        market.start()
        market.add_provider(north)
        yield market, north, south
    finally:
        market.stop()
        stop_provider(north)
        stop_provider(south)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    """Screenshot the page and insist that it logged no console error."""
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], f"console errors on {name}: {errors}"
    assert "Internal Server Error" not in driver.page_source


def go(driver: Any, market: Market, path: str, name: str) -> None:
    driver.get(market.url + path)
    shot(driver, name)


def fill(driver: Any, values: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for field, value in values.items():
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


def click(driver: Any, selector: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, selector).click()


def wait_for(driver: Any, text: str, seconds: float = 60) -> None:
    """Until the page (after a form's navigation) contains ``text``."""
    deadline = time.monotonic() + seconds
    while text not in driver.page_source:
        assert time.monotonic() < deadline, f"{text!r} did not appear"
        time.sleep(0.2)


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def test_a_buyer_and_an_admin_in_the_browser(site: tuple[Market, Provider, Provider],
                                             browser: Any) -> None:
    from selenium.webdriver.common.by import By

    market, _, south = site
    buyer = market.new_buyer("web-buyer")

    # The admin signs in and onboards a provider through the form.
    go(browser, market, "/", "01-login")
    fill(browser, {"token": market.admin_token})
    click(browser, "form[action='/login'] button")
    wait_for(browser, "<h1>Offers</h1>")
    assert browser.current_url.endswith("/offers")
    go(browser, market, "/admin", "02-admin")
    fill(browser, {"name": "south", "broker_url": south.node.endpoint,
                   "broker_user": BROKER_USER, "broker_password": BROKER_PASSWORD})
    click(browser, "form[action='/admin/providers'] button")
    wait_for(browser, "south is listed")
    shot(browser, "03-admin-onboarded")
    assert "provider.certify" in browser.page_source  # the audit log
    click(browser, "form[action='/logout'] button")
    wait_for(browser, "<h1>Sign in</h1>")

    # The buyer signs in, filters and sorts offers, with an estimate for its month.
    go(browser, market, "/login", "04-login-buyer")
    fill(browser, {"token": buyer})
    click(browser, "form[action='/login'] button")
    wait_for(browser, "<h1>Offers</h1>")
    assert browser.get_cookie("slm_session")["httpOnly"] is True
    fill(browser, {"expect_gb": "100", "expect_egress_gb": "1"})
    click(browser, "form[action='/offers'] button")
    wait_for(browser, "1.0200 EUR")
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["north", "south"]
    assert "1.0200 EUR" in rows[0].text  # 100 GB x 0.010 + 1 GB x 0.020
    shot(browser, "05-offers")
    fill(browser, {"jurisdiction": "IT"})
    click(browser, "form[action='/offers'] button")
    wait_for(browser, "1 offer(s)")
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert len(rows) == 1 and "south" in rows[0].text
    shot(browser, "06-offers-filtered")
    go(browser, market, "/offers?sort=price_egress_gb", "07-offers-sorted")
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert rows[0].find_elements(By.TAG_NAME, "td")[0].text == "south"
    browser.set_window_size(390, 844)  # a phone
    go(browser, market, "/offers", "08-offers-phone")
    browser.set_window_size(1280, 1000)

    # Buy: the preview shows the matched offer and its cost, then confirm.
    go(browser, market, "/buy", "09-buy")
    fill(browser, {"expect_gb": "100", "expect_egress_gb": "1"})
    click(browser, "#preview")
    wait_for(browser, "The matched offer")
    assert "north" in text_of(browser, "matched")
    assert text_of(browser, "expected-cost") == "1.0200 EUR"
    shot(browser, "10-buy-preview")
    click(browser, "#confirm")
    wait_for(browser, "Secret access key")
    shot(browser, "11-bought")
    creds = {"endpoint": text_of(browser, "endpoint"),
             "region": text_of(browser, "region-value"),
             "access_key_id": text_of(browser, "access-key"),
             "secret_access_key": text_of(browser, "secret-key")}
    s3 = s3_for(creds)
    s3.create_bucket(Bucket="from-the-browser")
    for i in range(5):
        s3.put_object(Bucket="from-the-browser", Key=f"k{i}", Body=b"web" * 100)
        assert s3.get_object(Bucket="from-the-browser", Key=f"k{i}")["Body"].read() == (
            b"web" * 100)

    # A provider's charts (probes run every second).
    time.sleep(3)
    go(browser, market, "/providers", "12-providers")
    go(browser, market, "/providers/north", "13-provider-charts")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 3
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline")
    assert "Certification history" in browser.page_source
    assert "s3.isolation.read" in browser.page_source  # the per-check table

    # Usage is collected; the buyer invoices the period and downloads the CSV.
    time.sleep(5)
    market.json("collect")
    go(browser, market, "/subscriptions", "14-subscriptions")
    sub_link = browser.find_element(By.CSS_SELECTOR, "main table tbody tr td a")
    sub_link.click()
    wait_for(browser, "Usage so far")
    shot(browser, "15-subscription")
    assert "collected period" in browser.page_source
    click(browser, "#reveal")
    wait_for(browser, 'id="secret-key"')
    assert text_of(browser, "secret-key") == creds["secret_access_key"]
    assert creds["secret_access_key"] not in browser.current_url
    go(browser, market, "/billing", "16-billing")
    click(browser, "#make-invoice")
    wait_for(browser, "Amount due")
    shot(browser, "17-invoice")
    click(browser, "#csv")
    deadline = time.monotonic() + 20
    while not list(browser.downloads.glob("invoice-*.csv")):
        assert time.monotonic() < deadline, "the CSV did not download"
        time.sleep(0.2)
    [download] = list(browser.downloads.glob("invoice-*.csv"))
    rows_csv = list(csv.DictReader(io.StringIO(download.read_text())))
    assert rows_csv and {"BilledCost", "ProviderName", "ChargePeriodStart"} <= set(rows_csv[0])
    assert {r["ProviderName"] for r in rows_csv} == {"north"}
    go(browser, market, "/billing", "18-billing")
    fill(browser, {"amount": "100", "alerts": "50,80"})
    click(browser, "form[action='/billing/budget'] button")
    wait_for(browser, "per month; charged in")
    shot(browser, "18-billing-budget")

    # A move, from the subscription's page: quote, then start; it completes.
    go(browser, market, "/subscriptions", "19-subscriptions")
    browser.find_element(By.CSS_SELECTOR, "main table tbody tr td a").click()
    wait_for(browser, "Move to another provider")
    click(browser, "#quote-move")
    wait_for(browser, 'id="move-quote"')
    assert "quoted cost" in text_of(browser, "move-quote")
    shot(browser, "20-move-quote")
    click(browser, "#start-move")
    wait_for(browser, "<h1>Subscriptions</h1>")
    deadline = time.monotonic() + 120
    while True:
        states = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "td.move-state")]
        if states == ["done"]:
            break
        assert "failed" not in states and time.monotonic() < deadline, states
        time.sleep(1)
        browser.refresh()
    shot(browser, "21-moved")
    moved = market.json("subscriptions", token=buyer)
    assert {s["provider"]: s["status"] for s in moved} == {"north": "cancelled",
                                                          "south": "active"}

    # The buyer has no admin page.
    browser.get(market.url + "/admin")
    assert "Only the market's admin" in browser.page_source


def test_state_changes_need_the_csrf_token(site: tuple[Market, Provider, Provider]) -> None:
    market, _, _ = site
    buyer = market.new_buyer("csrf-buyer")
    with httpx.Client(base_url=market.url) as web:
        web.get("/login")
        token = web.cookies.get("slm_csrf")
        assert token
        signed_in = web.post("/login", data={"token": buyer, "csrf": token})
        assert signed_in.status_code == 303
        # Same session, no (or a wrong) CSRF field: refused, nothing bought.
        for data in ({"policy": "cheapest"}, {"policy": "cheapest", "csrf": "x" * 43}):
            refused = web.post("/buy", data=data)
            assert refused.status_code == 403
            assert "security token" in refused.text
        refused = web.post("/billing/budget", data={"amount": "5"})
        assert refused.status_code == 403
        assert market.json("subscriptions", token=buyer) == []
        # A login without the token is refused too (login CSRF).
        with httpx.Client(base_url=market.url) as fresh:
            assert fresh.post("/login", data={"token": buyer}).status_code == 403
        # No secret in a URL: the pages link to nothing that carries one.
        page = web.get("/subscriptions").text
        assert "slm_" not in page

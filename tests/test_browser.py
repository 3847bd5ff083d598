"""End to end in headless Chromium: the test page runs an example and renders its card as an EHR would."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

MISSING = "Chromium and chromedriver not installed (apt-get install chromium chromium-driver; .ci/run does it)"
# .ci/run installs them and sets CDS_TEST_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
REQUIRED = os.environ.get("CDS_TEST_REQUIRE_BROWSER") == "1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not REQUIRED, reason=MISSING),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in development mode, in a thread."""
    import uvicorn

    from cds_service.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path_factory.mktemp("browser"), mode="development", auth_mode=None))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1500,1000", f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def run_example(browser, server: str, name: str, profile: str = "article"):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server + "/")
    Select(browser.find_element(By.ID, "example")).select_by_value(name)
    Select(browser.find_element(By.ID, "service")).select_by_value(profile)
    browser.find_element(By.ID, "run").click()
    wait = WebDriverWait(browser, 20)
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "card"))
    return wait


def test_example_renders_a_warning_card_with_its_trace(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    run_example(browser, server, "failed-oral-trial")
    cards = browser.find_elements(By.CSS_SELECTOR, "#cards .card")
    assert [c.get_attribute("data-outcome") for c in cards] == ["escalate-iv-iron"]
    card = cards[0]
    assert "card--warning" in card.get_attribute("class").split()
    summary = card.find_element(By.CSS_SELECTOR, ".card__summary").text
    assert summary, "the card has a summary"
    # the summary is coloured by the indicator (warning: #b35c00), as the sandbox colours it
    assert card.find_element(By.CSS_SELECTOR, ".card__summary").value_of_css_property("color") == "rgba(179, 92, 0, 1)"
    source = card.find_element(By.CSS_SELECTOR, ".card__source")
    assert source.text.startswith("From ") and card.text.count("Source:") == 1, "one Source heading: the citations"
    assert source.find_element(By.CSS_SELECTOR, "img.card__icon").get_attribute("src").endswith("/static/icon.png")
    trace = browser.find_element(By.ID, "trace").text
    assert "Fired rules" in trace and "escalate-iv-iron" in trace and "Silent rules" in trace
    assert "needs " in trace and ", which does not hold" in trace, "an unmet condition reads as a need, not as a fact"
    browser.save_screenshot(str(tmp_path / "failed-oral-trial.png"))
    assert (tmp_path / "failed-oral-trial.png").stat().st_size > 10_000


def test_dismissing_a_card_posts_feedback(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    wait = run_example(browser, server, "rls-low-ferritin")
    card = browser.find_element(By.CSS_SELECTOR, "#cards .card")
    assert card.get_attribute("data-outcome") == "start-oral-iron"
    reason = card.find_element(By.CSS_SELECTOR, "select.override-reason")
    assert reason.get_attribute("value") == "", "no reason is chosen for the clinician"
    card.find_element(By.CSS_SELECTOR, "button.dismiss").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#cards .card .feedback"), "feedback recorded"))
    assert "card--dismissed" in card.get_attribute("class").split()
    browser.save_screenshot(str(tmp_path / "dismissed.png"))


def test_card_detail_markdown_is_rendered_safely(browser, server):
    """Detail is Markdown from the service: rendered as a subset, with any HTML escaped first."""
    browser.get(server + "/")
    html = browser.execute_script(
        "return renderMarkdown(arguments[0])",
        "**Ferritin** 32 `ng/mL`\n\n- one\n- two\n\n<img src=x onerror=alert(1)> [ok](https://example.org/a?b=1&c=2) [bad](javascript:alert(1))",
    )
    assert "<strong>Ferritin</strong>" in html and "<code>ng/mL</code>" in html and "<ul><li>one</li><li>two</li></ul>" in html
    assert "<img" not in html and "&lt;img" in html
    assert 'href="https://example.org/a?b=1&amp;c=2"' in html
    assert 'href="javascript' not in html and "bad" in html  # the label stays, the link does not


def test_the_timeline_draws_the_labs_thresholds_courses_and_infusions(browser, server, tmp_path):
    """What is drawn, not only that a picture exists: one point per usable ferritin, the profile's
    ferritin thresholds, the oral iron course as a span, an infusion as a mark, the decision day."""
    from selenium.webdriver.common.by import By

    run_example(browser, server, "failed-oral-trial")
    svg = browser.find_element(By.CSS_SELECTOR, "#timeline svg.timeline")
    assert len(svg.find_elements(By.CSS_SELECTOR, "circle.point.ferritin")) == 2
    thresholds = {line.get_attribute("data-name") for line in svg.find_elements(By.CSS_SELECTOR, "line.threshold.ferritin")}
    assert thresholds == {"ferritin_low", "ferritin_overload"}
    course = svg.find_element(By.CSS_SELECTOR, "rect.oral-course")
    assert course.size["width"] > 100, "100 days of oral iron span a good part of the axis"
    assert len(svg.find_elements(By.CSS_SELECTOR, "line.decision-day")) == 1
    assert svg.find_elements(By.CSS_SELECTOR, "line.infusion") == []
    svg.screenshot(str(tmp_path / "timeline.png"))

    run_example(browser, server, "iv-iron-repeat-course")
    svg = browser.find_element(By.CSS_SELECTOR, "#timeline svg.timeline")
    assert len(svg.find_elements(By.CSS_SELECTOR, "line.infusion")) == 1
    assert svg.find_element(By.CSS_SELECTOR, "line.infusion").location["x"] < svg.find_element(By.CSS_SELECTOR, "line.decision-day").location["x"]


def test_the_draft_order_select_shows_the_whole_file_name(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    select = browser.find_element(By.ID, "draft")
    assert "sandbox-ferrous-sulfate.json" in [o.text for o in select.find_elements(By.TAG_NAME, "option")]
    width = browser.execute_script(
        "const c = document.createElement('canvas').getContext('2d'); c.font = getComputedStyle(arguments[0]).font; return c.measureText(arguments[1]).width;",
        select, "sandbox-ferrous-sulfate.json",
    )
    assert select.size["width"] > width + 30, f"the select ({select.size['width']} px) cuts a {width:.0f} px file name"

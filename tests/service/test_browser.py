"""The inspection page in a real browser: headless Chromium (Selenium) against the real app on the
small generated knowledge base (``served_kb``) served by uvicorn in a thread. Upload a defective photo, wait for
the verdict, the heat map, the retrieved knowledge cards and the streamed answer; the Knowledge tab
lists documents. Skipped when Chromium, chromedriver or selenium is missing."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbengine import synth
from kbengine.core.encoders.base import Encoder
from tests.conftest import open_kb

pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SIZE = 160
WAIT_S = 90


def _find(paths: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    for path in paths:
        if Path(path).is_file():
            return path
    for name in names:
        if found := shutil.which(name):
            return found
    return None


CHROMIUM = _find(("/usr/bin/chromium",), ("chromium", "chromium-browser"))
CHROMEDRIVER = _find(("/usr/bin/chromedriver",), ("chromedriver",))

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (/usr/bin/chromium, chromium or chromium-browser)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="no chromedriver (/usr/bin/chromedriver or on PATH)"),
]


@pytest.fixture(scope="module")
def server(served_kb: Path, packaged: Encoder) -> Iterator[str]:
    """The real app on the served knowledge base (normal references, defect examples, cards), on
    127.0.0.1 at a free port, started in a thread; its base URL. Nothing here writes to it."""
    yield from _serve(served_kb, packaged)


@pytest.fixture
def writable_server(served_kb: Path, packaged: Encoder, tmp_path: Path) -> Iterator[str]:
    """The same on a copy of the knowledge base: feedback writes to it."""
    copy = tmp_path / "kb-copy"
    shutil.copytree(served_kb, copy)
    yield from _serve(copy, packaged)


def _serve(served_kb: Path, packaged: Encoder) -> Iterator[str]:
    from kbengine.service import ServiceSettings, create_app

    kb = open_kb(served_kb, packaged)
    app = create_app(kb, ServiceSettings(api_keys=None, api_keys_file=None))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    runner = uvicorn.Server(config)  # off the main thread it installs no signal handlers
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # up, and the models warm (/readyz answers 200)
            if not thread.is_alive():
                raise RuntimeError("the server thread stopped while starting")
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not become ready in 120 s")
            time.sleep(0.2)
        yield base
    finally:
        runner.should_exit = True
        thread.join(timeout=30)
        sock.close()
        kb.close()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    # A driver path given: Selenium Manager is never asked (it would try to download one).
    chrome = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def _console_errors(chrome: webdriver.Chrome) -> list[str]:
    try:
        return [entry["message"] for entry in chrome.get_log("browser") if entry.get("level") == "SEVERE"]
    except Exception:  # not every driver keeps the log
        return []


def test_inspect_a_defective_photo(server, driver, tmp_path):
    photo = tmp_path / "scratched-disc.png"
    synth.sample("disc", "scratch", 52_001, SIZE)[0].save(photo)
    driver.get(f"{server}/")
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#inspect-category option[value='disc']")))
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    driver.find_element(By.ID, "inspect-submit").click()
    try:
        wait.until(lambda d: d.find_element(By.ID, "inspect-result").get_attribute("data-state") in ("done", "error"))
    finally:
        shot = tmp_path / "inspect.png"
        driver.save_screenshot(str(shot))
    result = driver.find_element(By.ID, "inspect-result")
    assert result.get_attribute("data-state") == "done", (
        driver.find_element(By.ID, "error").text,
        _console_errors(driver),
    )
    assert shot.is_file() and shot.stat().st_size > 0
    assert driver.find_element(By.ID, "verdict").text.strip()
    assert (driver.find_element(By.ID, "heatmap").get_attribute("src") or "").startswith("data:image/png")
    hits = driver.find_elements(By.CSS_SELECTOR, "#hits .hit")
    assert hits and all(hit.find_element(By.CLASS_NAME, "hit-title").text.strip() for hit in hits)
    assert driver.find_element(By.ID, "answer").text.strip()
    assert driver.find_element(By.ID, "verdict").text == "Defective"
    assert driver.find_elements(By.CSS_SELECTOR, "#boxes .box"), "a region box over the scratch"
    # citations in the answer link to the cards
    for link in driver.find_elements(By.CSS_SELECTOR, "#answer a.cite"):
        target = link.get_attribute("href").rsplit("#", 1)[1]
        assert driver.find_elements(By.ID, target)


def test_knowledge_tab_lists_documents(server, driver, tmp_path):
    driver.get(f"{server}/")
    driver.find_element(By.ID, "tab-knowledge").click()
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#doc-list .doc .doc-title")))
    titles = [t.text.strip() for t in driver.find_elements(By.CSS_SELECTOR, "#doc-list .doc .doc-title")]
    assert titles and all(titles)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#kb-table tbody tr td")))
    assert "disc" in driver.find_element(By.ID, "kb-table").text
    driver.save_screenshot(str(tmp_path / "knowledge.png"))
    assert (tmp_path / "knowledge.png").is_file()


def _inspect(driver, wait, photo: Path) -> None:
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    driver.find_element(By.ID, "inspect-submit").click()
    wait.until(lambda d: d.find_element(By.ID, "inspect-result").get_attribute("data-state") in ("done", "error"))
    assert driver.find_element(By.ID, "inspect-result").get_attribute("data-state") == "done", (
        driver.find_element(By.ID, "error").text,
        _console_errors(driver),
    )
    wait.until(ec.visibility_of_element_located((By.ID, "feedback-card")))


def _feedback_done(driver, wait) -> str:
    wait.until(
        lambda d: d.find_element(By.ID, "feedback-status").get_attribute("data-state") not in (None, "", "running")
    )
    return driver.find_element(By.ID, "feedback-status").get_attribute("data-state")


def test_feedback_buttons(writable_server, driver, tmp_path):
    import json

    server = writable_server
    first = tmp_path / "disc-a.png"
    second = tmp_path / "disc-b.png"
    synth.sample("disc", "scratch", 52_101, SIZE)[0].save(first)
    synth.sample("disc", "scratch", 52_102, SIZE)[0].save(second)
    driver.get(f"{server}/")
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#inspect-category option[value='disc']")))
    _inspect(driver, wait, first)
    driver.execute_script("arguments[0].click()", driver.find_element(By.ID, "feedback-good"))
    assert _feedback_done(driver, wait) == "added", driver.find_element(By.ID, "feedback-status").text
    assert "normal reference" in driver.find_element(By.ID, "feedback-status").text
    doc_id = driver.find_element(By.ID, "feedback-status").get_attribute("data-doc-id")
    # correct the type: another type of the category
    options = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#feedback-type option")]
    choice = next(v for v in options if v and v != "good")
    driver.execute_script("document.getElementById('feedback-status').dataset.state = '';")
    driver.execute_script("document.getElementById('feedback-type').value = arguments[0];", choice)
    driver.execute_script("arguments[0].click()", driver.find_element(By.ID, "feedback-correct"))
    assert _feedback_done(driver, wait) == "relabelled", driver.find_element(By.ID, "feedback-status").text
    # confirm on another photo
    _inspect(driver, wait, second)
    driver.execute_script("arguments[0].click()", driver.find_element(By.ID, "feedback-confirm"))
    assert _feedback_done(driver, wait) == "added", driver.find_element(By.ID, "feedback-status").text
    with urllib.request.urlopen(f"{server}/v1/documents?source=feedback", timeout=30) as response:
        docs = json.load(response)["documents"]
    assert len(docs) >= 2 and all(d.get("feedback") for d in docs)
    # a seek of the same photo finds the fed-back document
    boundary = "kbenginefeedbacktest"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + first.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{server}/v1/seek", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read().decode()
    assert doc_id and doc_id in text
    # the Knowledge tab shows the fed-back badge
    driver.find_element(By.ID, "tab-knowledge").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#doc-list .doc")))

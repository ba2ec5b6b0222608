"""The notebooks in a real JupyterLab, driven by headless Chromium through Selenium.

A copy of the prepared failed workspace (state.yaml + notebooks/00_status.ipynb) is served by
JupyterLab on a free localhost port; the browser opens the notebook, runs all cells from the Run
menu, and reads the live panel: badge, iteration, stage, last error and history values. It then
clicks Start (refused: the iteration failed) and Retry, and waits for the live panel to turn
"ready" on its own refresh.

On a fresh tiny workspace the browser then steps through one iteration by hand as a researcher
would: it runs each stage notebook (01..04) and ``05_explore`` in turn and checks that each shows
its work live (figures, the drawn positions, the play-out, the widgets that choose what to show).
Screenshots go to ``test-artifacts/`` (printed; gitignored). Skipped only where Chromium and its
driver are not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from helpers.notebooks import git, strip_all_as_committed
from helpers.workspaces import FAILED, failed_workspace, reviewed_workspace

from forge.ui.metric_info import flag_text
from forge.ui.text import HISTORY_COLUMNS

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1300")

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser"), pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"no Chromium here ({CHROMIUM} / {CHROMEDRIVER} missing): "
           "apt-get install chromium chromium-driver (as .ci/run does) to run the browser test",
)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(home: Path) -> dict[str, str]:
    """Jupyter's config, data and runtime folders kept in the test's tmp dir; this venv's kernels only."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "TQDM")) and k != "FORGE_HEADLESS"}
    for name in ("config", "data", "runtime", "settings"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_PLATFORM_DIRS="1",
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"))
    # no "news" toast over the notebook
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    # every cell stays in the page (no windowing), so a section far down can be found and scrolled to
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    return env


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, object]]:
    """JupyterLab serving a prepared workspace copy; shut down (kernels included) afterwards."""
    ws = failed_workspace(tmp_path / "ws")
    (ws / "runs" / "iter-0003" / "logs").mkdir(parents=True)  # the failed iteration's folder, for its link
    (ws / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "00_status.ipynb", ws / "notebooks")
    with serve(ws, tmp_path) as served:
        yield served


@pytest.fixture
def fresh_lab(tmp_path: Path) -> Iterator[dict[str, object]]:
    """JupyterLab serving a fresh tiny workspace (``init`` only) with every notebook beside it."""
    ws = tmp_path / "ws"
    made = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", "--root", str(ws), "init", "--preset", "tiny",
                           "--wandb-group", "browser", "--wandb-mode", "disabled"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    shutil.copytree(REPO / "notebooks", ws / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with serve(ws, tmp_path) as served:
        yield served


@contextmanager
def serve(ws: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    """JupyterLab on a free localhost port with ``ws`` as its root; shut down (kernels included) afterwards."""
    env = jupyter_env(tmp_path / "jupyter")

    # The notebook asks for kernel "python3": it must be this venv's interpreter (ipykernel's spec,
    # whose argv[0] "python" jupyter_client replaces with the server's own sys.executable).
    specs = json.loads(subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], env=env,
                                      capture_output=True, text=True, check=True, timeout=60).stdout)
    spec = specs["kernelspecs"]["python3"]
    assert Path(spec["resource_dir"]).resolve().is_relative_to(Path(sys.prefix).resolve()), spec
    assert spec["spec"]["argv"][0] in ("python", "python3", sys.executable), spec

    port, token = free_port(), os.urandom(16).hex()
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ws}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: its commands (save) for the test
         f"--config={REPO / 'jupyter_server_config.py'}",  # as the README starts it (git status after a save)
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers run as root
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield {"ws": ws, "base": base, "token": token, "log": tmp_path / "jupyterlab.log"}
    finally:
        req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def waiter(browser, seconds: float = 60):
    """A wait that retries while JupyterLab re-renders an element it was reading (a stale element)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException])


def open_and_run_all(browser, lab: dict[str, object], notebook: str) -> None:
    """Open ``notebook`` (relative to the served root) and start Run All once its kernel is idle."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{lab['base']}/lab/tree/{notebook}?reset&token={lab['token']}")
    waiter(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook")))
    # Run All before the kernel is up would ask for a kernel instead: wait for "Python 3 (ipykernel) | Idle"
    waiter(browser).until(lambda d: "Python 3 (ipykernel) | Idle" in d.find_element(By.ID, "jp-main-statusbar").text)
    browser.find_element(By.XPATH, "//li[contains(@class, 'lm-MenuBar-item') and .='Run']").click()
    waiter(browser, 10).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, ".lm-Menu-item[data-command='runmenu:run-all']"))).click()


def shutdown_kernels(lab: dict[str, object]) -> None:
    """End every notebook session (and its kernel), so the next notebook runs on a calm machine."""
    auth = {"Authorization": f"token {lab['token']}"}
    with urllib.request.urlopen(urllib.request.Request(f"{lab['base']}/api/sessions", headers=auth), timeout=10) as r:
        sessions = json.load(r)
    for session in sessions:
        req = urllib.request.Request(f"{lab['base']}/api/sessions/{session['id']}", method="DELETE", headers=auth)
        urllib.request.urlopen(req, timeout=30).close()


def test_status_notebook_in_jupyterlab_shows_the_state_and_its_buttons_work(lab, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    def wait(seconds: float = 60):
        return waiter(browser, seconds)

    def text_of(css: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, css).text.strip()

    def click_button(label: str) -> None:
        xpath = f"//button[contains(@class, 'widget-button') and contains(., '{label}')]"
        wait(10).until(ec.element_to_be_clickable((By.XPATH, xpath))).click()

    open_and_run_all(browser, lab, "notebooks/00_status.ipynb")

    try:
        # the live panel is the widget view (it refreshes itself), not the static fallback
        wait(90).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".forge-live-panel .forge-panel .forge-badge")))
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "status-panel-timeout.png"))
        raise AssertionError(f"no live panel appeared; see {ARTIFACTS / 'status-panel-timeout.png'} and "
                             f"{lab['log']}:\n{Path(lab['log']).read_text()[-3000:]}") from None
    wait(10).until(lambda d: text_of(".forge-history") != "")
    assert text_of(".forge-badge") == FAILED["status"]
    assert text_of(".forge-iteration") == FAILED["iteration"]
    assert text_of(".forge-stage") == FAILED["stage"]
    assert text_of(".forge-error") == FAILED["error"]
    history = text_of(".forge-history")
    for value in FAILED["accuracies"] + FAILED["q_gaps"]:
        assert value in history
    # one best iteration, the one with the best val Q-gap, green, with its flag beside it (not instead)
    best = browser.find_elements(By.CSS_SELECTOR, ".forge-history tr.forge-best")
    assert len(best) == 1 and best[0].find_element(By.CSS_SELECTOR, "td").text == FAILED["best"]
    assert best[0].value_of_css_property("background-color") in ("rgb(223, 243, 223)", "rgba(223, 243, 223, 1)")
    flag = best[0].find_element(By.CSS_SELECTOR, ".forge-flag")
    assert flag.get_attribute("title") == flag_text(FAILED["flag"]) and flag.text == "flagged"
    assert flag.value_of_css_property("background-color") in ("rgb(230, 97, 1)", "rgba(230, 97, 1, 1)")
    wait(20).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".widget-button")))

    # what a reader does in the panel survives its refreshes: an expanded legend, a selected text
    browser.find_element(By.CSS_SELECTOR, ".forge-columns summary").click()
    selected = browser.execute_script(
        "const range = document.createRange();"
        "range.selectNodeContents(document.querySelector('.forge-history tr.forge-best td'));"
        "window.getSelection().removeAllRanges(); window.getSelection().addRange(range);"
        "return window.getSelection().toString();")
    assert selected == FAILED["best"]
    from forge.flywheel.state import load_state, save_state

    st = load_state(lab["ws"])  # the flywheel's state moves on elsewhere (a terminal, another notebook)
    st.next_action = ("read the failing cell, then `python -m forge.cli.flywheel retry` "
                      "(edited while the panel was open)")
    save_state(lab["ws"], st)
    wait(30).until(lambda d: "edited while the panel was open" in text_of(".forge-next"))  # refreshed
    assert browser.execute_script("return document.querySelector('.forge-columns').open") is True
    assert browser.execute_script("return window.getSelection().toString()") == selected

    # links look like links (JupyterLab leaves a widget's links black and plain)
    state_link = browser.find_element(By.CSS_SELECTOR, ".forge-live-panel .forge-files a")
    assert state_link.value_of_css_property("color") not in ("rgb(0, 0, 0)", "rgba(0, 0, 0, 1)")
    assert "underline" in state_link.value_of_css_property("text-decoration")
    # the commands shown have copy buttons that put them on the clipboard
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": lab["base"], "permissions": [
        "clipboardReadWrite", "clipboardSanitizedWrite"]})
    for css, expected in ((".forge-next .forge-copy", "python -m forge.cli.flywheel retry"),
                          (".forge-loop-command .forge-copy", f"python -m forge.cli.flywheel --root {lab['ws']}")):
        button = browser.find_element(By.CSS_SELECTOR, css)
        button.click()
        wait(10).until(lambda d, b=button: b.text == "copied")
        assert clipboard(browser) == expected
    # the history sorts by a column's header (val Q-gap: ascending, then descending) and filters on its text
    def iterations() -> list[str]:
        return [r.find_element(By.CSS_SELECTOR, "td").text for r in browser.find_elements(
            By.CSS_SELECTOR, ".forge-live-panel .forge-history tr") if r.find_elements(By.CSS_SELECTOR, "td")
            and r.is_displayed()]

    gap_head = next(h for h in browser.find_elements(By.CSS_SELECTOR, ".forge-live-panel .forge-history th")
                    if h.text.split("\n")[0] == "Q-gap")
    gap_head.click()
    assert iterations() == ["2", "1"]  # 0.3917 before 0.6402
    gap_head.click()
    assert iterations() == ["1", "2"]
    box = browser.find_element(By.CSS_SELECTOR, ".forge-live-panel .forge-filter")
    box.send_keys(FAILED["q_gaps"][1])
    assert iterations() == ["2"] and "1 shown" in text_of(".forge-live-panel .forge-filter-count")
    box.clear()
    box.send_keys(" ")  # a change event with nothing to filter on: every row again
    assert iterations() == ["1", "2"]
    # its columns are chosen: "Q-gap" hidden, header and cells, then shown again
    browser.find_element(By.CSS_SELECTOR, ".forge-live-panel .forge-column-chooser summary").click()
    choice = wait(10).until(lambda d: next((lab for lab in d.find_elements(
        By.CSS_SELECTOR, ".forge-live-panel .forge-column-choices label") if lab.text.strip() == "Q-gap"), None))
    choice.find_element(By.TAG_NAME, "input").click()
    assert not gap_head.is_displayed()
    heads = [h.text.split("\n")[0] for h in browser.find_elements(
        By.CSS_SELECTOR, ".forge-live-panel .forge-history th") if h.is_displayed()]
    assert "Q-gap" not in heads and "zero-regret" in heads
    choice.find_element(By.TAG_NAME, "input").click()
    assert gap_head.is_displayed()
    # a folder's link opens it in JupyterLab's file browser, in this window
    windows = list(browser.window_handles)
    folder = wait(30).until(lambda d: next(iter(d.find_elements(By.LINK_TEXT, "runs/iter-0003/")), None))
    folder.click()
    wait(30).until(lambda d: "iter-0003" in d.find_element(By.CSS_SELECTOR, ".jp-BreadCrumbs").text
                   and "logs" in d.find_element(By.CSS_SELECTOR, ".jp-DirListing-content").text)
    assert browser.window_handles == windows and "00_status" in browser.title + text_of(".jp-mod-current")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-panel.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")

    click_button("Start one iteration")
    wait(20).until(lambda d: "iteration 3 failed" in text_of(".forge-message"))
    assert "press Retry" in text_of(".forge-message")
    assert not list((Path(lab["ws"]) / "runs").glob("loop-*.log"))  # refused: nothing started

    click_button("Retry")
    wait(20).until(lambda d: text_of(".forge-message").startswith("ready"))
    assert yaml.safe_load((Path(lab["ws"]) / "state.yaml").read_text())["status"] == "ready"
    # the panel's refresh thread picks the change up by itself
    wait(30).until(lambda d: text_of(".forge-badge") == "ready")
    assert browser.find_elements(By.CSS_SELECTOR, ".forge-error") == []
    after = ARTIFACTS / "status-panel-after-retry.png"
    browser.save_screenshot(str(after))
    print(f"screenshot: {after}")


#: Each notebook of one iteration stepped through by hand, in order, and what it must show live:
#: CSS selectors of its views, and how many dropdowns its widgets offer at least.
STEPS = (
    ("01_generate", (".forge-deal", ".forge-qtable"), 2),
    ("02_tokenize", (".forge-decoded-sample", ".forge-qtable"), 1),
    ("03_train", (), 0),
    ("04_evaluate", (".forge-comparison", ".forge-blunders", ".forge-playout .forge-trick"), 1),
    ("05_explore", (".forge-playout .forge-trick", ".forge-query"), 4),
)


def code_prompts(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]


def failed(browser) -> bool:
    """Whether any output shows a traceback, read in one pass inside the page: an output JupyterLab
    redraws meanwhile (a live figure, a widget) cannot go stale under the reading."""
    return browser.execute_script("return Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                                  ".some(e => e.innerText.includes('Traceback'))")


def run_to_the_end(browser, lab: dict[str, object], name: str) -> Path:
    """Open ``notebooks/<name>``, run all its cells and wait for the last; its screenshot's path."""
    from selenium.common.exceptions import TimeoutException

    def finished(_) -> bool:
        prompts = code_prompts(browser)
        return bool(prompts) and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) or failed(browser)

    open_and_run_all(browser, lab, f"notebooks/{name}.ipynb")
    try:
        waiter(browser, 300).until(finished)
    except TimeoutException:
        browser.save_screenshot(str(ARTIFACTS / f"{name}-timeout.png"))
        raise AssertionError(f"{name} did not finish; see {ARTIFACTS / f'{name}-timeout.png'}: "
                             f"{code_prompts(browser)}") from None
    shot = ARTIFACTS / f"{name}.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")
    assert not failed(browser), f"{name} raised; see {shot}"
    return shot


def save_notebook(browser, path: Path) -> None:
    """Save the open notebook, as a person does (File > Save), and wait until the file holds its outputs."""
    browser.execute_script("window.jupyterapp.commands.execute('docmanager:save')")

    def saved(_) -> bool:
        try:
            return any(c.get("outputs") for c in json.loads(path.read_text())["cells"])
        except (OSError, ValueError):  # being written
            return False

    waiter(browser, 30).until(saved)


def clipboard(browser) -> str:
    """What the page's clipboard holds (read through the browser, as a paste would)."""
    return browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('unreadable: ' + e))")


def shot(browser, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")


def test_stage_notebooks_by_hand_in_jupyterlab_then_recorded_with_their_archive(fresh_lab, browser) -> None:
    """One iteration by hand in JupyterLab, then exploring it: every notebook runs to its last cell
    without an error and shows its figures, drawn positions and widgets; saved, each is still its
    committed self for git. Start then records the iteration without redoing it: its archive is the
    notebooks as saved in JupyterLab, marked by hand, with real durations; the panel's links to them,
    to state.yaml and to runs/ open in JupyterLab, and an archived page links back to the index."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    ws = Path(fresh_lab["ws"])
    # the notebooks under git as in a clone set up by the README's main command (its filter)
    git(ws, "init", "-q")
    for key, value in (("user.email", "t@example.com"), ("user.name", "t"),
                       ("filter.nbstripout.clean", f"{sys.executable} -m nbstripout"),
                       ("filter.nbstripout.smudge", "cat"), ("filter.nbstripout.required", "true"),
                       ("filter.nbstripout.extrakeys", "metadata.language_info")):
        git(ws, "config", key, value)
    for name in (".gitattributes", ".gitignore"):  # .gitignore: JupyterLab's .ipynb_checkpoints/
        shutil.copy(REPO / name, ws / name)
    # added without running the filter: the committed notebooks are already what it writes
    # (tests/test_packaging.py), and its interpreter start per notebook cost ten seconds here
    git(ws, "-c", "filter.nbstripout.clean=cat", "add", ".gitattributes", ".gitignore", "notebooks")
    git(ws, "commit", "-qm", "notebooks as committed")
    ARTIFACTS.mkdir(exist_ok=True)
    for name, selectors, dropdowns in STEPS:
        run_to_the_end(browser, fresh_lab, name)
        assert browser.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img"), f"{name} shows no figure"
        for css in selectors:
            found = browser.find_elements(By.CSS_SELECTOR, css)
            assert found, f"{name} does not show {css}"
            browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", found[0])
            shot(browser, f"{name}-{css.split()[0].strip('.')}")
        assert len(browser.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")) >= dropdowns, name
        if name == "03_train":  # the live curve was drawn under the stage call while it trained
            train_cell = next(c for c in browser.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
                              if "stages.train.run(" in c.text)
            live = train_cell.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img")
            assert live, "no live training curve"
            assert "Tip:" not in train_cell.text and "LeafSpec" not in train_cell.text  # no Lightning chatter
            images = browser.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img")
            for label, image in (("live-curve", live[0]), ("curves", images[-1])):
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
                shot(browser, f"{name}-{label}")
        save_notebook(browser, ws / "notebooks" / f"{name}.ipynb")
        shutdown_kernels(fresh_lab)
    # opened, run and saved in JupyterLab, every notebook is still its committed self once git's filter
    # (as the README's main command configures it) has stripped it
    saved = strip_all_as_committed({name: (ws / "notebooks" / f"{name}.ipynb").read_text() for name, *_ in STEPS})
    for name, stripped in saved.items():
        assert stripped == (REPO / "notebooks" / f"{name}.ipynb").read_text(), name
    # and `git status` says so (it compared each saved notebook through the filter: JupyterLab's post-save hook)
    assert git(ws, "status", "--porcelain", "--", "notebooks") == ""

    # Start records the iteration: every stage already done, archived from the notebooks as saved
    open_and_run_all(browser, fresh_lab, "notebooks/00_status.ipynb")
    waiter(browser, 90).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".forge-live-panel .forge-panel")))
    waiter(browser, 20).until(ec.element_to_be_clickable(
        (By.XPATH, "//button[contains(@class, 'widget-button') and contains(., 'Start one iteration')]"))).click()

    def recorded_row(d):
        rows = d.find_elements(By.CSS_SELECTOR, ".forge-live-panel .forge-history tr.forge-best")
        badge = d.find_elements(By.CSS_SELECTOR, ".forge-live-panel .forge-badge")
        return rows[0] if rows and badge and badge[0].text == "ready" else False

    row = waiter(browser, 300).until(recorded_row)
    cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "td")]
    labels = [label for label, _ in HISTORY_COLUMNS]
    assert cells[0] == "1" and float(cells[labels.index("minutes")]) > 0  # the by-hand work, not 0.0
    assert float(cells[labels.index("game-value MAE")]) > 0  # the V read off the Q head, in points
    assert len(row.find_elements(By.CSS_SELECTOR, ".forge-by-hand")) == 4
    from forge.flywheel.state import load_state

    history = load_state(ws).history[0].to_dict()
    assert history["by_hand"] == ["generate", "tokenize", "train", "evaluate"]
    for stage, (name, *_) in zip(history["by_hand"], STEPS):
        note = "".join(json.loads((ws / history["notebooks"][stage]).read_text())["cells"][0]["source"])
        assert f"run by hand in notebooks/{name}.ipynb: the notebook as it was saved there" in note
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", row)
    shot(browser, "status-panel-by-hand-recorded")

    # the panel says so at its top: the iteration finished (a notice, not a row to spot)
    notice = waiter(browser, 30).until(lambda d: next(iter(d.find_elements(
        By.CSS_SELECTOR, ".forge-live-panel .forge-notice")), None))
    assert "iteration 1 finished" in notice.text and "val Q-gap" in notice.text

    # the panel's links open in this JupyterLab, in this browser window: an archived notebook's page (the
    # HTML viewer), the archive index (whose own links then work there too), state.yaml (the editor) and
    # the iteration's runs/ folder (the file browser)
    windows = list(browser.window_handles)

    def viewed(d) -> str:
        """The text of the page in the HTML viewer in view (read inside its frame)."""
        frames = [f for f in d.find_elements(By.CSS_SELECTOR, ".jp-MainAreaWidget iframe") if f.is_displayed()]
        if not frames:
            return ""
        d.switch_to.frame(frames[0])
        try:
            return d.find_element(By.TAG_NAME, "body").text
        finally:
            d.switch_to.default_content()

    def back_to_the_panel() -> None:
        browser.find_element(By.XPATH, "//li[contains(@class, 'lm-TabBar-tab') and "
                                       ".//*[text()='00_status.ipynb']]").click()
        waiter(browser, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, ".forge-live-panel").is_displayed())

    row.find_element(By.LINK_TEXT, "gen").click()
    page = waiter(browser, 60).until(lambda d: "run by hand in" in viewed(d) and viewed(d))
    assert "01 · Generate oracle shards" in page and "the stage's work took" in page
    assert "a snapshot, not kept up to date" in page  # its panel: dated, without links
    assert browser.window_handles == windows  # no new browser tab, no second JupyterLab
    shot(browser, "archived-notebook-in-jupyterlab")
    back_to_the_panel()

    def files_link(how: str, text: str):
        """A link of the panel's files line, once the panel's refresh shows it (the archive index is
        written when the iteration is recorded, and the panel redraws every few seconds)."""
        return waiter(browser, 60).until(lambda d: next(iter(d.find_element(
            By.CSS_SELECTOR, ".forge-live-panel .forge-files").find_elements(how, text)), None))

    files_link(By.PARTIAL_LINK_TEXT, "archive index").click()
    page = waiter(browser, 60).until(lambda d: "forge flywheel archive" in viewed(d) and viewed(d))
    assert "Compare two iterations" in page and page.count("by hand") >= 4
    assert "Trust HTML" in page  # without scripts (JupyterLab's default) the page says what its links need
    browser.execute_script("window.jupyterapp.shell.currentWidget.trusted = true")  # as its Trust HTML button
    waiter(browser, 30).until(lambda d: "Trust HTML" not in viewed(d) and "forge flywheel archive" in viewed(d))
    frame = next(f for f in browser.find_elements(By.CSS_SELECTOR, ".jp-MainAreaWidget iframe") if f.is_displayed())
    browser.switch_to.frame(frame)
    try:
        browser.find_element(By.CSS_SELECTOR, "table.forge-history").find_element(By.LINK_TEXT, "train").click()
    finally:
        browser.switch_to.default_content()
    page = waiter(browser, 60).until(lambda d: "Archived notebook" in viewed(d) and viewed(d))
    assert "403" not in page and "03 · " in page  # the index's link works inside JupyterLab
    browser.switch_to.frame(next(f for f in browser.find_elements(By.CSS_SELECTOR, ".jp-MainAreaWidget iframe")
                                 if f.is_displayed()))
    try:  # and so does the archived page's own link back to the index (not a login page)
        browser.find_element(By.PARTIAL_LINK_TEXT, "the archive index").click()
    finally:
        browser.switch_to.default_content()
    waiter(browser, 60).until(lambda d: "Compare two iterations" in viewed(d))
    shot(browser, "archive-index-link-in-jupyterlab")
    back_to_the_panel()
    files_link(By.LINK_TEXT, "state.yaml").click()
    waiter(browser, 60).until(lambda d: any("status: ready" in e.text for e in d.find_elements(
        By.CSS_SELECTOR, ".jp-FileEditor .cm-content")))  # the editor draws the lines in view: the top
    shot(browser, "state-yaml-from-the-panel")
    back_to_the_panel()
    files_link(By.LINK_TEXT, "runs/iter-0001/").click()
    waiter(browser, 60).until(lambda d: "iter-0001" in d.find_element(By.CSS_SELECTOR, ".jp-BreadCrumbs").text
                              and "results" in d.find_element(By.CSS_SELECTOR, ".jp-DirListing-content").text)
    shot(browser, "runs-folder-from-the-panel")
    assert browser.window_handles == windows


@pytest.fixture
def two_iterations_lab(tiny_runs, tmp_path: Path) -> Iterator[dict[str, object]]:
    """JupyterLab on a copy of the tiny workspace after two loop iterations, with the notebooks beside it."""
    ws = tmp_path / "ws"
    shutil.copytree(tiny_runs["ws"], ws, symlinks=True)
    shutil.copytree(REPO / "notebooks", ws / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with serve(ws, tmp_path) as served:
        yield served


def test_compare_notebook_and_the_archive_index_compare_two_iterations(two_iterations_lab, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from forge.flywheel.records import PRIMARY_METRIC, best_of
    from forge.flywheel.state import load_state

    ws = Path(two_iterations_lab["ws"])
    best = best_of(load_state(ws).history, *PRIMARY_METRIC).iteration
    other = 3 - best
    ARTIFACTS.mkdir(exist_ok=True)
    run_to_the_end(browser, two_iterations_lab, "06_compare")

    def compared(d) -> str:
        found = d.find_elements(By.CSS_SELECTOR, ".forge-compare")
        return found[0].text if found else ""

    assert f"A: ws · iteration {best} (best)" in compared(browser)
    assert f"B: ws · iteration {other}" in compared(browser)
    for css in (".forge-compare-workspaces", ".forge-compare-metrics", ".forge-compare-decl", ".forge-compare-depth",
                ".forge-config-diff"):
        assert browser.find_elements(By.CSS_SELECTOR, css), css
    assert "points / move" in browser.find_element(By.CSS_SELECTOR, ".forge-compare-metrics").text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img")) >= 3  # breakdown, curves, trends
    assert browser.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons")  # the curves' x axis
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});",
                           browser.find_element(By.CSS_SELECTOR, ".forge-compare"))
    shot(browser, "06_compare-pair")
    pickers = browser.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")
    assert len(pickers) == 2
    Select(pickers[1]).select_by_visible_text(f"ws · iteration {best} (best)")  # B: the best too
    waiter(browser, 60).until(lambda d: f"B: ws · iteration {best} (best)" in compared(d))
    assert "the same configuration" in browser.find_element(By.CSS_SELECTOR, ".forge-config-diff").text
    images = browser.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", images[-1])
    shot(browser, "06_compare-trends")
    shutdown_kernels(two_iterations_lab)

    # a note on the best iteration, then the archive index sorts its history and filters it on the note
    noted = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", "--root", str(ws), "note", str(best),
                            "#keeper"], capture_output=True, text=True, timeout=120)
    assert noted.returncode == 0, noted.stderr
    browser.get((ws / "archive" / "index.html").as_uri())
    heads = browser.find_elements(By.CSS_SELECTOR, "table.forge-history th")
    next(h for h in heads if h.text.startswith("iter")).click()
    next(h for h in heads if h.text.startswith("iter")).click()  # descending

    def shown_iterations() -> list[str]:
        return [r.find_element(By.CSS_SELECTOR, "td").text for r in browser.find_elements(
            By.CSS_SELECTOR, "table.forge-history tr") if r.find_elements(By.CSS_SELECTOR, "td") and r.is_displayed()]

    assert shown_iterations() == ["2", "1"]
    browser.find_element(By.CSS_SELECTOR, ".forge-filter").send_keys("#keeper")
    assert shown_iterations() == [str(best)]
    assert browser.find_element(By.CSS_SELECTOR, "table.forge-history tr.forge-best .forge-note").text == "#keeper"
    shot(browser, "archive-index-sorted-filtered")

    # the archive index, read without any server as a static page: the best row green; any two iterations
    # side by side; its links open the archived pages, which link back (JupyterLab's /files/ URLs sandbox a
    # page, so there it is read in the HTML viewer, as the other browser test clicks through)
    browser.get((ws / "archive" / "index.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.forge-history tr.forge-best")
    assert len(rows) == 1 and rows[0].find_element(By.CSS_SELECTOR, "td").text == str(best)
    Select(browser.find_element(By.ID, "forge-a")).select_by_visible_text(f"ws · iteration {other}")
    Select(browser.find_element(By.ID, "forge-b")).select_by_visible_text(f"ws · iteration {best} (best)")
    text = browser.find_element(By.ID, "forge-compare").text
    assert f"A: ws · iteration {other} · B: ws · iteration {best} (best)" in text
    metrics = browser.find_element(By.CSS_SELECTOR, "#forge-compare .forge-compare-metrics").text
    depth = browser.find_element(By.CSS_SELECTOR, "#forge-compare .forge-compare-depth").text
    assert "val Q-gap points / move lower" in metrics and "Q-gap after 0 tricks" in depth
    assert "A states" in depth and "B states" in depth  # redrawn for the picked pair with the counts
    browser.execute_script("document.getElementById('compare').scrollIntoView()")
    shot(browser, "archive-index-compare")
    browser.find_element(By.CSS_SELECTOR, "table.forge-history tr.forge-best").find_element(
        By.LINK_TEXT, "train").click()
    waiter(browser, 30).until(lambda d: "Archived notebook" in d.find_element(By.TAG_NAME, "body").text)
    assert "run by the loop" in browser.find_element(By.TAG_NAME, "body").text
    assert "forge-snapshot" in browser.page_source and "a snapshot, not kept up to date" in browser.page_source
    shot(browser, "archived-notebook-page")
    browser.find_element(By.PARTIAL_LINK_TEXT, "the archive index").click()
    waiter(browser, 30).until(lambda d: d.find_elements(By.ID, "forge-compare"))


@pytest.fixture
def running_lab(tiny_runs, tmp_path: Path) -> Iterator[dict[str, object]]:
    """JupyterLab on a copy of the tiny workspace after one iteration, with 00_status beside it."""
    ws = tmp_path / "ws"
    shutil.copytree(tiny_runs["after_one"], ws, symlinks=True)
    data = yaml.safe_load((ws / "state.yaml").read_text())
    data["config"]["epochs"] = 500  # the train stage lasts until the test stops the loop
    (ws / "state.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (ws / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "00_status.ipynb", ws / "notebooks")
    with serve(ws, tmp_path) as served:
        yield served


def test_the_live_panel_shows_progress_inside_a_running_stage(running_lab, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    ws = Path(running_lab["ws"])
    loop = subprocess.Popen([sys.executable, "-m", "forge.cli.flywheel", "--once", "--no-wandb"], cwd=ws,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        open_and_run_all(browser, running_lab, "notebooks/00_status.ipynb")
        waiter(browser, 90).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".forge-live-panel .forge-panel")))

        def progress(d) -> str:
            found = d.find_elements(By.CSS_SELECTOR, ".forge-live-panel .forge-running .forge-progress")
            return found[0].text if found else ""

        # the panel refreshes on its own: the train stage's phase and step counter appear, then advance
        waiter(browser, 240).until(lambda d: re.search(r"(training|validating), \d+/\d+", progress(d)))
        first = progress(browser)
        waiter(browser, 120).until(lambda d: progress(d) != first and progress(d) != "")
        running = browser.find_element(By.CSS_SELECTOR, ".forge-live-panel .forge-running").text
        assert "train" in running and "by the loop" in running
        assert browser.find_element(By.CSS_SELECTOR, ".forge-live-panel .forge-badge").text == "running"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-panel-in-stage-progress.png"
        browser.save_screenshot(str(shot))
        print(f"\nscreenshot: {shot}")
    finally:
        loop.send_signal(signal.SIGTERM)  # stops like Ctrl+C; SIGINT may be ignored under a test worker
        loop.wait(timeout=120)


def test_the_archive_index_fits_a_1400_px_window(browser, tmp_path: Path) -> None:
    """Every column (the evaluate notebooks, the W&B runs) in view at 1,400 px, no sideways scrolling."""

    from forge.flywheel.state import load_state, save_state
    from forge.ui.archive_index import write_index

    ws = reviewed_workspace(tmp_path / "ws")
    state = load_state(ws)
    for h in state.history:
        run = ws / f"runs/iter-{h.iteration:04d}/domino/version_0/wandb/offline-run-20260101_000000-abcdefgh"
        h.wandb = {"dir": str(run), "sync": f"wandb sync {run}"}
        h.notebooks = {s: f"archive/iter-{h.iteration:04d}/{n}.ipynb" for s, n in (
            ("generate", "01_generate"), ("tokenize", "02_tokenize"), ("train", "03_train"),
            ("evaluate", "04_evaluate"))}
        h.by_hand = ["generate", "tokenize", "train", "evaluate"]
    save_state(ws, state)
    browser.get((write_index(ws)).as_uri())
    width = browser.execute_script("return document.documentElement.scrollWidth")
    view = browser.execute_script("return window.innerWidth")
    assert view <= 1400 and width <= view, f"the index needs {width} px in a {view} px window"
    assert browser.title == "forge archive"

"""The dashboard's pages in a real browser: headless chromium driven by Selenium over a live ``expforge ui``.

Assertions are on what the page rendered (rows, metric values, plot traces and axes, a task's log), checked
against the runs' own records. Every test saves a screenshot under the session's temporary directory
(``ui-screenshots``), the artifacts a person looks at.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ui_gate import compile_gate
from ui_runs import Runs, Server, browser_or_skip, serve, session_runs

pytestmark = pytest.mark.e2e

WAIT_S = 60


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return session_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    driver = browser_or_skip()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(runs: Runs, tmp_path_factory: pytest.TempPathFactory):
    with serve(runs.root, tmp_path_factory.mktemp("ui-browser-logs")) as live:
        yield live


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-screenshots")


def wait(browser, condition, message: str):
    """Poll ``condition`` until it holds; a handle made stale by a page that re-rendered counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    return waiter.until(condition, message)


def live(browser, selector: str) -> dict[str, str] | None:
    """The text and class of the first element matching ``selector``, read in one script, or None when absent.

    A live run page reloads itself when the run's state changes, so an element handle found in one call can be
    gone by the next; reading both values inside the page leaves no handle to go stale.
    """
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]);"
        " return e ? {text: e.textContent.trim(), cls: e.getAttribute('class') || ''} : null;",
        selector,
    )


def text_of(browser, selector: str) -> str | None:
    found = live(browser, selector)
    return None if found is None else found["text"]


def class_of(browser, selector: str) -> str:
    found = live(browser, selector)
    return "" if found is None else found["cls"]


def screenshot(browser, shots: Path, name: str) -> None:
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(int(height), 800), 4000))
    assert browser.save_screenshot(str(shots / f"{name}.png"))
    browser.set_window_size(1400, 1000)


def css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def test_runs_page_lists_runs_with_exact_metrics(browser, server: Server, runs: Runs, shots: Path) -> None:
    browser.get(server.url + "/")
    rows = {row.get_attribute("data-run"): row for row in css(browser, "tr.run-row")}
    assert set(rows) == {runs.baseline, runs.hyperband}
    accuracy = runs.record(runs.baseline)["pipeline_outputs"]["accuracy"]
    cell = rows[runs.baseline].find_element("css selector", 'td[data-metric="accuracy"]')
    assert cell.text == f"{accuracy:.4f}"
    assert "succeeded" in rows[runs.hyperband].text and "hyperband-digits" in rows[runs.hyperband].text
    screenshot(browser, shots, "runs")
    # a filter narrows the rows; a bad one names its field
    browser.get(server.url + "/?pipeline=mnist-baseline")
    assert [r.get_attribute("data-run") for r in css(browser, "tr.run-row")] == [runs.baseline]
    browser.get(server.url + "/?since=not-a-date")
    assert css(browser, "#filter-error")[0].text.startswith("since:")


def test_selecting_runs_opens_compare_with_every_curve(browser, server: Server, runs: Runs, shots: Path) -> None:
    browser.get(server.url + "/")
    for box in css(browser, "input.pick"):
        box.click()
    css(browser, "#compare-button")[0].click()
    wait(browser, lambda b: b.execute_script("return !!(document.getElementById('loss-plot').data)"), "no plot")
    trials = [k for k in runs.record(runs.hyperband)["tasks"] if "hyperband-trial" in k]
    # train and val loss of the baseline (its history CSV) and of every trial task (tracked series)
    expected = 2 + 2 * len(trials)
    assert browser.execute_script("return document.getElementById('loss-plot').data.length") == expected
    assert browser.execute_script("return document.getElementById('accuracy-plot').data.length") == expected
    assert browser.execute_script("return document.getElementById('loss-plot').layout.xaxis.title.text") == "epoch"
    differing = [row.text for row in css(browser, "#compare-table tr.differs")]
    assert any(text.startswith("param epochs") for text in differing)
    screenshot(browser, shots, "compare-epoch")
    css(browser, 'input[name="xaxis"][value="time"]')[0].click()
    title = "return document.getElementById('loss-plot').layout.xaxis.title.text"
    wait(browser, lambda b: b.execute_script(title) == "wall time (s)", "x-axis did not switch")
    screenshot(browser, shots, "compare-time")


def test_run_page_graph_task_panel_log_and_previews(browser, server: Server, runs: Runs, shots: Path) -> None:
    record = runs.record(runs.baseline)
    browser.get(f"{server.url}/runs/{runs.baseline}")
    nodes = {n.get_attribute("data-key"): n for n in css(browser, "svg.graph g.node")}
    assert set(nodes) == set(record["tasks"])
    assert all("SUCCEEDED" in n.get_attribute("class") for n in nodes.values())
    assert (
        len(css(browser, "svg.graph path.edge")) == 4
    )  # bootstrap→train, fonts→train, train→evaluate, bootstrap→evaluate
    nodes["evaluate"].click()
    wait(browser, lambda b: css(b, "#task-log"), "the task panel did not load")
    log = Path(record["tasks"]["evaluate"]["log"]).read_text()
    first_line = log.splitlines()[0]
    assert first_line in css(browser, "#task-log")[0].text
    accuracy = record["pipeline_outputs"]["accuracy"]
    assert css(browser, '.task-metrics td[data-metric="accuracy"]')[0].text == f"{accuracy:.4f}"
    image = css(browser, 'figure.preview.image img[alt="evaluation/confusion_matrix.png"]')[0]
    browser.execute_script("arguments[0].scrollIntoView()", image)  # previews load lazily
    wait(browser, lambda b: b.execute_script("return arguments[0].naturalWidth", image) > 0, "image not loaded")
    frame = css(browser, "figure.preview.html iframe")[0]
    assert frame.get_attribute("sandbox") == ""  # no scripts, no same-origin access
    assert css(browser, "figure.preview.markdown table")  # report.md rendered, its table included
    bundle = {f.get_attribute("alt") for f in css(browser, "figure.preview.image img")}
    assert {"evaluation/bundle/roc_curves.png", "evaluation/bundle/mistakes.png"} <= bundle
    screenshot(browser, shots, "run-baseline")


def test_the_trainer_task_panel_shows_its_curves_inline(browser, server: Server, runs: Runs, shots: Path) -> None:
    browser.get(f"{server.url}/runs/{runs.baseline}")
    css(browser, 'svg.graph g.node[data-key="train-sklearn"]')[0].click()
    wait(browser, lambda b: css(b, '.task-detail[data-key="train-sklearn"]'), "the task panel did not load")
    image = css(browser, 'figure.preview.image img[alt="tensorboard/curves.png"]')[0]
    browser.execute_script("arguments[0].scrollIntoView()", image)  # previews load lazily
    wait(browser, lambda b: b.execute_script("return arguments[0].naturalWidth", image) == 800, "curves not loaded")
    assert browser.execute_script("return arguments[0].naturalHeight", image) == 320
    screenshot(browser, shots, "run-baseline-train")


def test_grouped_loop_iterations_and_hyperband_page(browser, server: Server, runs: Runs, shots: Path) -> None:
    record = runs.record(runs.hyperband)
    browser.get(f"{server.url}/runs/{runs.hyperband}")
    chips = [c.get_attribute("data-key") for c in css(browser, "svg.graph rect.chip")]
    assert sorted(chips) == sorted(k for k, t in record["tasks"].items() if t.get("iteration"))
    screenshot(browser, shots, "run-hyperband")
    css(browser, f'svg.graph rect.chip[data-key="{chips[0]}"]')[0].click()
    wait(browser, lambda b: css(b, f'.task-detail[data-key="{chips[0]}"]'), "the trial's panel did not load")

    browser.get(f"{server.url}/runs/{runs.hyperband}/hyperband")
    wait(browser, lambda b: b.execute_script("return !!document.getElementById('parcoords-plot').data"), "no plot")
    records = [t["parameters"]["record"] for t in record["tasks"].values() if "record" in t.get("parameters", {})]
    configs = [r.get("config") or r["item"]["config"] for r in records]
    trial_ids = {r.get("trial_id") or r["item"]["trial_id"] for r in records}
    labels = browser.execute_script(
        "return document.getElementById('parcoords-plot').data[0].dimensions.map(d => d.label)"
    )
    assert labels == sorted({k for c in configs for k in c}) + ["val_accuracy"]
    assert browser.execute_script("return document.getElementById('rung-plot').data.length") == len(trial_ids)
    assert len(css(browser, "#trial-leaderboard tbody tr")) == len(trial_ids)
    screenshot(browser, shots, "hyperband")


def test_registry_page_shows_versions_aliases_and_evaluation(browser, server: Server, runs: Runs, shots: Path) -> None:
    browser.get(server.url + "/registry")
    (model,) = css(browser, 'section.model[data-model="ui-digits"]')
    assert "champion → v1" in model.text
    accuracy = runs.record(runs.baseline)["pipeline_outputs"]["accuracy"]
    assert f"{accuracy:.4f}" in model.find_element("css selector", 'tr.version[data-version="1"]').text
    screenshot(browser, shots, "registry")


def test_note_and_tag_edit_from_the_run_page(browser, server: Server, runs: Runs, shots: Path) -> None:
    browser.get(f"{server.url}/runs/{runs.hyperband}")
    form = css(browser, "#note-form")[0]
    note = form.find_element("name", "note")
    note.clear()
    note.send_keys("tiny Hyperband for the UI tests")
    form.find_element("name", "tag").send_keys("purpose=ui-test")
    form.find_element("css selector", "button").click()
    wait(browser, lambda b: css(b, "#note-status")[0].text == "saved", "not saved")
    assert "purpose=ui-test" in css(browser, "#tags")[0].text
    status, body = server.get(f"/api/runs/{runs.hyperband}")
    assert body["note"] == "tiny Hyperband for the UI tests" and body["tags"]["purpose"] == "ui-test"
    screenshot(browser, shots, "note")


def test_run_page_updates_task_states_while_the_run_works(browser, tmp_path: Path, shots: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    gate = tmp_path / "gate"
    spec = compile_gate(tmp_path / "gate.yaml")
    command = [sys.executable, "-m", "expforge", "run", str(spec), "--backend", "subprocess", "--root", str(root)]
    process = subprocess.Popen(
        [*command, "-p", f"gate={gate}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + WAIT_S
        records: list[Path] = []
        while not records:
            records = [p for p in root.glob("*/run.json") if "wait-for" in p.read_text()]
            assert time.monotonic() < deadline and process.poll() is None, "the run did not start its first task"
            time.sleep(0.2)
        run_id = records[0].parent.name
        with serve(root, tmp_path) as live_ui:
            browser.get(f"{live_ui.url}/runs/{run_id}")
            # the gate is shut: the run stays running with its first task at work until the test opens it
            wait(browser, lambda b: text_of(b, "#run-state") == "running", "the page does not show a running run")
            wait(browser, lambda b: "RUNNING" in class_of(b, 'g.node[data-key="wait-for"]'), "first task not running")
            assert live(browser, 'g.node[data-key="after"]') is None  # not started yet
            screenshot(browser, shots, "live-running")
            gate.write_text("open")
            wait(browser, lambda b: text_of(b, "#run-state") == "succeeded", "no update")
            wait(browser, lambda b: "SUCCEEDED" in class_of(b, 'g.node[data-key="after"]'), "the second task never ran")
            screenshot(browser, shots, "live-done")
        assert process.wait(timeout=WAIT_S) == 0
        assert json.loads(records[0].read_text())["state"] == "SUCCEEDED"
    finally:
        if process.poll() is None:
            gate.write_text("open")
            process.wait(timeout=WAIT_S)

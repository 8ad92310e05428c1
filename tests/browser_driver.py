"""Drive the workbook in JupyterLab with headless Debian Chromium (Playwright), as a person would.

Run by tests/test_browser.py (``python tests/browser_driver.py SHOTS_DIR``; it prints one ``RESULT {json}`` line).
Follows ../shared/lab-browser-recipe.md: JupyterLab started by ``make lab`` with HOME and Jupyter's settings in
a temporary folder, cells rendered and the kernel idle before Run All (retried), per-step timeouts,
a screenshot of every step (on failure too), the server's process group ended in ``finally``.
The notebooks run on ``smoke``: copies in the temporary folder get papermill's injected-parameters cell.
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
NOTEBOOKS = [
    "01_data_exploration",
    "02_baselines",
    "03_gradient_methods",
    "04_heads",
    "05_pals",
    "06_gradient_compromise",
    "07_results",
]
# per notebook: (what to toggle, kind, value, whether the result is a paper row's run)
TOGGLES = {
    "02_baselines": ("EDA augmentation", "checkbox", None, False),
    "03_gradient_methods": ("gradient method", "dropdown", "pcgrad", True),  # the pcgrad row: its run is reused
    "04_heads": ("+ [CLS] embedding", "checkbox", None, False),
    "05_pals": ("PALs trained", "dropdown", "only during finetuning", True),  # advanced_pal_finetune
    "06_gradient_compromise": ("individual pretraining", "checkbox", None, False),
}
RUN_ALL_S, PANEL_RUN_S = 420, 180


def settings(root: Path) -> None:
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "autoStartDefaultKernel": True,
            "windowingMode": "none",
        },
    }  # every cell in the DOM
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def smoke_copies(dest: Path, tmp: Path) -> None:
    """The notebooks with profile=smoke and every output in the temporary folder (papermill's parameter cell)."""
    import nbformat
    from papermill import inspect_notebook
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    params = {
        "profile": "smoke",
        "out_dir": str(tmp / "runs"),
        "figures_dir": str(tmp / "figures"),
        "results_md": str(tmp / "results.md"),
    }
    dest.mkdir()
    for name in NOTEBOOKS:
        path = str(REPO / "notebooks" / f"{name}.ipynb")
        declared = inspect_notebook(path)  # each notebook refuses parameters it does not declare
        nb = parameterize_notebook(load_notebook_node(path), {k: v for k, v in params.items() if k in declared})
        nbformat.write(nb, dest / f"{name}.ipynb")


class Lab:
    def __init__(self, page, base: str, token: str, shots: Path, log: list):
        self.page, self.base, self.token, self.shots, self.log, self.n = page, base, token, shots, log, 0

    def shot(self, what: str) -> None:
        self.n += 1
        path = self.shots / f"{self.n:02d}-{what}.png"
        self.page.screenshot(path=str(path), full_page=False)
        self.log.append(str(path))

    def step(self, what: str, t0: float) -> None:
        print(f"[browser] {what} ({time.perf_counter() - t0:.1f} s)", flush=True)

    def open(self, name: str, workspace: str) -> None:
        page = self.page
        page.goto(f"{self.base}/lab/workspaces/{workspace}/tree/{name}.ipynb?token={self.token}")
        prompt = self.nb.locator(".jp-CodeCell .jp-InputPrompt").first
        expect(prompt).to_be_visible(timeout=90_000)
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=90_000)

    @property
    def nb(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def prompts(self) -> list[str]:
        return self.nb.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()

    def run_all(self) -> None:
        first = self.nb.locator(".jp-CodeCell .jp-InputPrompt").first
        for attempt in range(2):  # retried once: a click before the notebook is ready does nothing
            self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            self.page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
            try:
                expect(first).not_to_have_text(re.compile(r"^\s*\[ \]:\s*$"), timeout=15_000)
                break
            except AssertionError:
                if attempt:
                    raise
        deadline = time.monotonic() + RUN_ALL_S
        while time.monotonic() < deadline:
            texts = [t.strip() for t in self.prompts()]
            if texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts):
                status = self.page.locator("#jp-main-statusbar").inner_text()
                if "Idle" in status:
                    return
            time.sleep(1.0)
        raise AssertionError(f"Run All did not finish in {RUN_ALL_S} s; prompts {self.prompts()}")

    def check_outputs(self, name: str) -> dict:
        errors = self.nb.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        texts = errors.all_inner_texts()
        assert not [t for t in texts if "Traceback" in t or "Error" in t], f"{name}: a cell errored: {texts[:2]}"
        assert not texts, f"{name}: {len(texts)} stderr box(es): {[t[:200] for t in texts[:3]]}"
        body = self.nb.inner_text()
        assert "Error displaying widget" not in body, f"{name}: Error displaying widget"
        assert "VBox(children=" not in body, f"{name}: a widget shown as its text repr"
        return {"stderr_boxes": len(texts)}

    def panel(self):
        return self.nb.locator(".mtlib-panel").first

    def check_layout(self, name: str) -> None:
        """No two controls overlap and no label is cut off (the issue's 1280 px screenshots)."""
        bad = self.panel().evaluate("""p => {
            const els = [...p.querySelectorAll('.mtlib-controls > *')];
            const r = els.map(e => e.getBoundingClientRect());
            const out = [];
            for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++)
                if (r[i].left < r[j].right - 1 && r[j].left < r[i].right - 1 &&
                    r[i].top < r[j].bottom - 1 && r[j].top < r[i].bottom - 1) out.push(`overlap ${i} ${j}`);
            for (const l of p.querySelectorAll('.mtlib-controls .widget-label, .mtlib-controls label'))
                if (l.scrollWidth > l.clientWidth + 1) out.push(`cut: ${l.textContent}`);
            const area = p.closest('.jp-OutputArea-output').getBoundingClientRect();
            r.forEach((x, i) => { if (x.right > area.right + 1) out.push(`outside: ${i}`); });
            return out; }""")
        assert not bad, f"{name}: panel layout: {bad}"

    def toggle(self, label: str, kind: str, value) -> None:
        panel = self.panel()
        if kind == "checkbox":
            panel.locator(".widget-checkbox", has_text=label).locator("input[type=checkbox]").click()
        elif kind == "dropdown":
            panel.locator(".widget-dropdown", has_text=label).locator("select").select_option(label=value)
        else:
            box = panel.locator(".widget-text", has_text=label).locator("input")
            box.fill(str(value))
            box.press("Enter")

    def status(self) -> str:
        return self.panel().locator(".mtlib-status").inner_text()

    def wait_status(self, pattern: str, timeout_s: float) -> str:
        expect(self.panel().locator(".mtlib-status")).to_contain_text(re.compile(pattern), timeout=timeout_s * 1000)
        return self.status()

    def press(self, button: str) -> None:
        self.panel().locator(f"button.mtlib-{button.lower()}").click()


def drive(lab: Lab, tmp: Path, t0: float) -> dict:
    report = {}
    for i, name in enumerate(NOTEBOOKS):
        lab.open(name, f"w{i}")
        lab.step(f"{name}: open, kernel idle", t0)
        lab.run_all()
        lab.step(f"{name}: Run All finished", t0)
        lab.shot(f"{name}-run-all")
        report[name] = lab.check_outputs(name)
        if name in TOGGLES:
            report[name].update(panel_run(lab, name, t0))
        if name == "06_gradient_compromise":
            report[name]["stop"] = stop_run(lab, name, t0)
        if name == "02_baselines":
            report[name]["reopened"] = save_and_reopen(lab, name, tmp, t0)
        shutdown_kernels(lab)
    return report


def panel_run(lab: Lab, name: str, t0: float) -> dict:
    label, kind, value, is_row = TOGGLES[name]
    panel = lab.panel()
    panel.scroll_into_view_if_needed()
    lab.check_layout(name)
    lab.toggle(label, kind, value)
    expect(panel.locator(".mtlib-describe")).to_contain_text(
        "this is row" if is_row else "no paper row", timeout=30_000
    )
    lab.shot(f"{name}-toggled")
    lab.press("Run")
    status = lab.wait_status(r"^done: ", PANEL_RUN_S)
    lab.step(f"{name}: panel run done", t0)
    panel.locator(".mtlib-curve img").scroll_into_view_if_needed()
    lab.shot(f"{name}-panel-done")
    run_dir = Path(status.removeprefix("done: ").split(" (")[0].strip())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expect(panel.locator(".mtlib-curve img")).to_be_visible()
    results = panel.locator("table.mtlib-results").inner_text()
    assert f"{metrics['dev']['mean']:.3f}" in results, results
    assert ("paper:" in results) == is_row and ("no paper row" in results) != is_row, results
    if not is_row:
        assert "+" in run_dir.parent.name and "/widgets/" in str(run_dir), run_dir  # named after what changed
    return {"panel_run": str(run_dir), "reused": "not retrained" in status, "mean": metrics["dev"]["mean"]}


def stop_run(lab: Lab, name: str, t0: float) -> dict:
    """A long run (many batches per epoch), stopped while it trains: its last.pt stays for a resume."""
    lab.toggle("batches / epoch", "int", 2000)
    lab.press("Run")
    lab.wait_status(r"^running: .* epoch \d+: dev mean", PANEL_RUN_S)  # after an epoch: last.pt written
    lab.shot(f"{name}-running")
    lab.press("Stop")
    status = lab.wait_status(r"^stopped: ", 120)
    lab.step(f"{name}: stopped", t0)
    lab.shot(f"{name}-stopped")
    run_dir = Path(re.search(r"<code>([^<]+)</code> \(", lab.panel().locator(".mtlib-describe").inner_html()).group(1))
    assert (run_dir / "last.pt").is_file() and not (run_dir / "metrics.json").exists(), run_dir
    return {"status": status, "run_dir": str(run_dir)}


def save_and_reopen(lab: Lab, name: str, tmp: Path, t0: float) -> dict:
    """Saved with the widget state (make lab's settings), reopened without a kernel: the panel, not its repr."""
    lab.page.keyboard.press("Control+s")
    path = tmp / "nb" / f"{name}.ipynb"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "widgets" not in json.loads(path.read_text()).get("metadata", {}):
        time.sleep(0.5)
    notebook = json.loads(path.read_text())
    saved = notebook.get("metadata", {}).get("widgets", {})
    assert saved, "widget state was not saved with the notebook"
    # every widget an output shows is in the saved state: none reopens as "model not found" (whether or not
    # JupyterLab renders that cell when the text is read below: it renders only the cells near the view)
    state = saved.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    views = [
        (i, o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"])
        for i, cell in enumerate(notebook["cells"])
        for o in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    dead = [i for i, model in views if model not in state]
    assert not dead, f"{len(dead)} widget output(s) without a saved model, in cells {sorted(set(dead))}"
    shutdown_kernels(lab)
    lab.page.goto(f"{lab.base}/lab/workspaces/reopen/tree/{name}.ipynb?token={lab.token}")
    expect(lab.nb.locator(".mtlib-panel").first).to_be_visible(timeout=60_000)
    body = lab.nb.inner_text()
    bad = [m for m in ("VBox(children=", "Error displaying widget") if m in body]
    assert not bad, f"{bad}: " + " | ".join(
        body[max(0, body.index(m) - 400) : body.index(m) + 200].replace("\n", " / ") for m in bad
    )
    lab.nb.locator(".mtlib-panel").first.scroll_into_view_if_needed()
    lab.shot(f"{name}-reopened")
    lab.step(f"{name}: saved and reopened", t0)
    return {"widget_models_saved": len(saved.get("application/vnd.jupyter.widget-state+json", {}).get("state", {}))}


def shutdown_kernels(lab: Lab) -> None:
    for session in _api(lab, "sessions"):
        _api(lab, f"sessions/{session['id']}", "DELETE")


def _api(lab: Lab, path: str, method: str = "GET"):
    req = urllib.request.Request(
        f"{lab.base}/api/{path}", method=method, headers={"Authorization": f"token {lab.token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(shots: Path) -> int:
    faulthandler.dump_traceback_later(float(os.environ.get("BROWSER_TEST_TIMEOUT", 1500)), exit=True)
    t0 = time.perf_counter()
    if shots.exists():
        shutil.rmtree(shots)
    shots.mkdir(parents=True)
    tmp_dir = tempfile.TemporaryDirectory(prefix="mtlib-browser-")
    tmp = Path(tmp_dir.name)
    home = tmp / "home"
    home.mkdir()
    token, port = secrets.token_hex(16), free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
        "JUPYTER_TOKEN": token,
        "JUPYTER_PORT": str(port),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    env.pop("MTLIB_INTERACTIVE", None)
    env.pop("PAPERMILL", None)
    settings(home / "lab-settings")
    smoke_copies(tmp / "nb", tmp)
    log_path = shots / "lab.log"
    server = subprocess.Popen(
        ["make", "-s", "-o", "data", "lab", f"LAB_DIR={tmp / 'nb'}"],
        cwd=REPO,
        env=env,
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    shots_log: list[str] = []
    result = {"ok": False, "screenshots": shots_log}
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"JupyterLab did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        time.sleep(1.0)  # the log line with the URL comes right after the server answers
        # a token given by JUPYTER_TOKEN is printed as "token=..." (a generated one in full)
        urls = re.findall(rf"http://127\.0\.0\.1:{port}/lab\?token=(?:\w+|\.\.\.)", log_path.read_text())
        assert urls, f"make lab printed no URL with a token: {log_path.read_text()[-1500:]}"
        result["url_printed"] = urls[0]
        print(f"[browser] server up ({time.perf_counter() - t0:.1f} s)", flush=True)
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(home / "chrome-profile"),
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                env=env,
                viewport={"width": 1280, "height": 900},
            )
            page = ctx.pages[0]
            page.set_default_timeout(30_000)
            page.add_locator_handler(
                page.locator(".jp-Dialog", has_text="Select Kernel"),
                lambda d: d.get_by_role("button", name="Select").click(),
            )
            lab = Lab(page, base, token, shots, shots_log)
            try:
                result["notebooks"] = drive(lab, tmp, t0)
                result["ok"] = True
            except BaseException as e:
                result["error"] = f"{type(e).__name__}: {e}"[:3000]
                try:
                    lab.shot("failure")
                except Exception:  # noqa: BLE001 - the page may be gone
                    pass
                raise
            finally:
                ctx.close()
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)  # make, jupyter lab and its kernels: one process group
            server.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        result["seconds"] = round(time.perf_counter() - t0, 1)
        print("RESULT " + json.dumps(result), flush=True)
        tmp_dir.cleanup()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

"""The workbook in JupyterLab, in a real browser (headless Debian Chromium driven by Playwright).

Every notebook (01-07) run on ``smoke`` with Run All: no cell errors, no stderr box, no "Error displaying
widget"; in each training notebook's panel one control toggled and Run pressed until "done" (run directory,
live curve, results line and its paper row checked); one Stop during a run; 02 saved and reopened with its
widget state. The driver (tests/browser_driver.py) runs in its own process group under an outer timeout;
screenshots of every step land in outputs/browser/ (on failure too).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "outputs" / "browser"
OUTER_TIMEOUT_S = 1800

pytestmark = pytest.mark.slow


def test_the_workbook_in_jupyterlab():
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed (apt-get install -y chromium; .ci/run installs it)")
    pytest.importorskip("playwright", reason="playwright is in the dev extra")
    assert shutil.which("make"), "the test starts JupyterLab through `make lab`"
    env = {**os.environ, "BROWSER_TEST_TIMEOUT": str(OUTER_TIMEOUT_S - 60)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "browser_driver.py"), str(SHOTS)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=OUTER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its server and the browser: nothing left behind
        out, _ = proc.communicate()
        pytest.fail(f"browser test passed its outer timeout of {OUTER_TIMEOUT_S} s:\n{out[-4000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert lines, out[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert proc.returncode == 0 and result["ok"], f"{result.get('error')}\n{out[-4000:]}"
    notebooks = result["notebooks"]
    assert set(notebooks) == {
        "01_data_exploration",
        "02_baselines",
        "03_gradient_methods",
        "04_heads",
        "05_pals",
        "06_gradient_compromise",
        "07_results",
    }
    assert notebooks["03_gradient_methods"]["reused"] and not notebooks["02_baselines"]["reused"]
    assert notebooks["06_gradient_compromise"]["stop"]["status"].startswith("stopped")
    assert notebooks["02_baselines"]["reopened"]["widget_models_saved"] > 0
    assert all(Path(p).is_file() for p in result["screenshots"])
    print(f"browser test: {result['seconds']} s, {len(result['screenshots'])} screenshots in {SHOTS}")

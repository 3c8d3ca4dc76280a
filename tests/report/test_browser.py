"""The report in a real browser: headless Chromium renders it without a console error, and not blank.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it when missing); without it
these tests skip, saying so. The screenshots stay in the test's temporary folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from biasaudit.report import write_report

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt install chromium; .ci/run does)")
# What Chromium logs to stderr for a page's console messages, script errors and blocked resources.
PROBLEMS = ("CONSOLE", "Uncaught", "Content Security Policy", "Failed to load resource", "net::ERR_")


def screenshot(page: Path, shot: Path) -> list[str]:
    """Render ``page`` headless into ``shot``; return the console lines Chromium reported."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--window-size=1100,2400", "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert shot.is_file(), result.stderr[-2000:]
    return [line for line in result.stderr.splitlines() if any(p in line for p in PROBLEMS)]


def distinct_colours(shot: Path) -> int:
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours or [])


def test_the_report_renders_cleanly(run_dir, tmp_path):
    html, _ = write_report(run_dir)
    shot = tmp_path / "report.png"
    assert screenshot(html, shot) == []
    assert distinct_colours(shot) > 50  # text, figures and tables, not a blank page


def test_the_check_sees_a_console_error_and_a_blank_page(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom'); undefinedCall();</script></body></html>"
    )
    problems = screenshot(broken, tmp_path / "broken.png")
    assert any("boom" in line for line in problems) and any("undefinedCall" in line for line in problems)
    assert distinct_colours(tmp_path / "broken.png") <= 2


def test_the_fairness_page_renders_cleanly(tmp_path):
    import pandas as pd

    from biasaudit.fairness import GroupFairness
    from biasaudit.report.fairness_page import render_fairness_html

    rows = 60
    frame = pd.DataFrame({"g": ["a"] * rows + ["b"] * rows, "y": [0, 1] * rows, "p": [1, 1, 0, 1] * (rows // 2)})
    page = tmp_path / "fairness.html"
    page.write_text(
        render_fairness_html(GroupFairness(n_bootstrap=50).fit(frame, label="y", pred="p", groups=["g"]).result_)
    )
    shot = tmp_path / "fairness.png"
    assert screenshot(page, shot) == []
    assert distinct_colours(shot) > 50


def test_the_sensitivity_page_renders_cleanly(tmp_path):
    from biasaudit.backend.spec import BackendSpec
    from biasaudit.report.sensitivity_page import render_sensitivity_html
    from biasaudit.sensitivity.analysis import DosePoint, dose_response
    from biasaudit.sensitivity.run import SensitivityConfig, SensitivityResult

    doses = [0.0, 0.25, 0.5, 0.75, 1.0]
    points = {
        f"suite.effect{k}": [
            DosePoint(d, s, k * d + 0.01 * s, (k * d - 0.1, k * d + 0.1)) for d in doses for s in (0, 1)
        ]
        for k in range(4)
    }
    config = SensitivityConfig(backend=BackendSpec(model="default"), planting="yes_prior", doses=doses)
    result = SensitivityResult(config, [dose_response(k, v) for k, v in points.items()], points, {}, {"d0-s0": 60.0})
    page = tmp_path / "sensitivity.html"
    page.write_text(render_sensitivity_html(result))
    shot = tmp_path / "sensitivity.png"
    assert screenshot(page, shot) == []
    assert distinct_colours(shot) > 50

"""The sensitivity page and table: every effect in the table, the tracking ones as findings, names escaped."""

from __future__ import annotations

import re

from biasaudit.backend.spec import BackendSpec
from biasaudit.report.sensitivity_page import render_sensitivity_html, sensitivity_table
from biasaudit.sensitivity.analysis import DosePoint, dose_response
from biasaudit.sensitivity.run import SensitivityConfig, SensitivityResult, markdown_table

DOSES = [0.0, 0.25, 0.5, 0.75, 1.0]
HOSTILE = "suite.<script>alert(1)</script>|x"


def result() -> SensitivityResult:
    config = SensitivityConfig(backend=BackendSpec(model="default"), planting="yes_prior", doses=DOSES)
    points = {
        # rises with the dose, tight intervals: tracks, detectable from 0.25 on
        "yesno_prior.p_yes": [DosePoint(d, s, d + 0.01 * s, (d - 0.05, d + 0.05)) for d in DOSES for s in (0, 1)],
        # flat: the same reading whatever the dose
        HOSTILE: [DosePoint(d, s, 0.3 + 0.02 * s, (0.1, 0.5)) for d in DOSES for s in (0, 1)],
    }
    responses = [dose_response(k, v) for k, v in points.items()]
    return SensitivityResult(config, responses, points, {"negbias": "no data <b>"}, {"d0-s0": 60.0, "d1-s1": 70.0})


def test_table_ranks_tracking_effects_first_and_reads_detectability():
    table = sensitivity_table(result())
    assert [row[0] for row in table.rows] == ["yesno_prior.p_yes", HOSTILE]
    tracking, flat = table.rows
    assert tracking[6] == "0.25" and flat[6] == "—"  # minimum detectable: |d - 0.5|
    assert tracking[1].startswith("+0.98")  # ties: two seeds per dose
    assert flat[1].startswith("+0.00")


def test_page_is_self_contained_and_escapes_every_name():
    page = render_sensitivity_html(result())
    assert "<script>" not in page and "&lt;script&gt;" in page and "no data &lt;b&gt;" in page
    assert re.search(r"<img src=\"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+\"", page)
    assert "http://" not in page.replace("http://www.w3.org", "") and "default-src 'none'" in page
    assert "yesno_prior.p_yes moves with the dose" in page and "1 of 2 effects move with the dose" in page
    assert "Training per adapter 60–70 s" in page


def test_markdown_table_escapes_and_lists_skips():
    text = markdown_table(result())
    assert "&lt;script&gt;" in text and "\\|x" in text and "negbias skipped: no data &lt;b&gt;" in text
    assert text.count("\n| ") == 3  # header and two effects
    assert "ρ with \\|d − 0.5\\|" in text  # the pipe of |d − 0.5| escaped in the header

"""biasaudit compare: effects shared by runs, their differences and interval overlap, escaped pages."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from biasaudit.cli import app
from biasaudit.report import load_run
from biasaudit.report.compare import compare_rows, overlap, render_compare

runner = CliRunner()


def _shifted(run_dir, folder, shift):
    """A copy of the run whose content-free P(Yes) (and its interval) moved by ``shift``."""
    shutil.copytree(run_dir, folder)
    doc = json.loads((folder / "results.json").read_text())
    prior = doc["suites"]["yesno_prior"]["result"]
    prior["mean_p_yes"] += shift
    prior["ci95"] = [prior["ci95"][0] + shift, prior["ci95"][1] + shift]
    doc["model"]["name"] = "<script>alert(1)</script>"
    (folder / "results.json").write_text(json.dumps(doc))
    return folder


def test_overlap_known_answers():
    assert overlap((0.1, 0.3), (0.3, 0.5)) and overlap((0.1, 0.5), (0.2, 0.3))
    assert not overlap((0.1, 0.2), (0.25, 0.5)) and not overlap((0.6, 0.7), (0.1, 0.5))


def test_compare_rows_and_pages(run_dir, tmp_path):
    prior = json.loads((run_dir / "results.json").read_text())["suites"]["yesno_prior"]["result"]
    width = prior["ci95"][1] - prior["ci95"][0]
    far = _shifted(run_dir, tmp_path / "after", -(width + 0.01))
    runs = [load_run(run_dir), load_run(far)]
    rows = {(r.suite, r.effect): r for r in compare_rows(runs)}
    row = rows[("yesno_prior", "P(Yes | content-free)")]
    assert row.changed and row.per_run[1].estimate - row.per_run[0].estimate < 0
    assert not any(r.changed for key, r in rows.items() if key[0] != "yesno_prior")  # nothing else moved
    html, markdown = render_compare(runs)
    assert "<script>" not in html and "&lt;script&gt;" in html and "no overlap" in html
    assert "**P(Yes \\| content-free)**" in markdown and "<script>" not in markdown


def test_compare_command(run_dir, tmp_path):
    other = _shifted(run_dir, tmp_path / "b", 0.0)
    result = runner.invoke(app, ["compare", str(run_dir), str(other), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["compare.html", "compare.md"]
    one = runner.invoke(app, ["compare", str(run_dir), "--out", str(tmp_path / "c1")])
    assert one.exit_code == 2 and "at least two" in one.output

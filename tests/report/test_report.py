"""The report: rendered from a run folder only, escaped, deterministic, with a section per suite."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser

import pytest

from biasaudit.errors import ConfigError, DatasetNotFoundError
from biasaudit.report import load_run, render_html, render_markdown, write_report

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_the_report_has_every_suite_and_self_contained_figures(run_dir):
    html_path, md_path = write_report(run_dir)
    assert (html_path.parent, md_path.parent) == (run_dir, run_dir)
    html = html_path.read_text()
    run = load_run(run_dir)
    tags = _tags(html)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object")]
    ids = {attrs.get("id") for _, attrs in tags}
    for name in run.results:
        assert name in ids, name
    images = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert images and all(src and src.startswith("data:image/svg+xml;base64,") for src in images)
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1]).lstrip().startswith(b"<?xml")
    assert run.model["name"] in html and str(run.model["weights_fingerprint"]) in html
    markdown = md_path.read_text()
    assert markdown.startswith("# Bias audit:") and "## Bias, Risks and Limitations" in markdown
    for name in run.results:
        assert f"(`{name}`)" in markdown


def test_rerendering_a_saved_run_is_byte_identical(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    first_html, first_md = (p.read_bytes() for p in write_report(run_dir))
    second_html, second_md = (p.read_bytes() for p in write_report(copy))
    assert first_html == second_html and first_md == second_md


def test_model_and_dataset_strings_are_escaped(run_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    doc = json.loads((bad / "results.json").read_text())
    doc["model"]["name"] = SCRIPT
    prior = doc["suites"]["yesno_prior"]["result"]
    prior["by_template"][0]["template"] = IMG
    doc["suites"]["yesno_prior"]["headline"] = SCRIPT
    (bad / "results.json").write_text(json.dumps(doc))
    rows = [json.loads(line) for line in (bad / "samples" / "negbias.jsonl").read_text().splitlines()]
    for row in rows:
        if row.get("kind") == "question":
            row["question"] = f"{SCRIPT} {IMG}"
        if row.get("kind") == "prediction":
            row.update(answer="no", gold=True, scenario="plain")  # every prediction lands in the worst-examples table
    (bad / "samples" / "negbias.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_run(bad)
    html = render_html(run)
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert [t for t, _ in _tags(html) if t == "script"] == []
    markdown = render_markdown(run)
    assert "<script" not in markdown and "<img src=x" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown


def test_load_run_errors_and_tidy_frame(run_dir, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"results\.json not found"):
        load_run(tmp_path)
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    doc = json.loads((old / "results.json").read_text())
    doc["schema_version"] = 0
    (old / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="schema_version 0"):
        load_run(old)
    frame = load_run(run_dir).frame()
    assert list(frame.columns) == ["suite", "metric", "group", "value", "ci_low", "ci_high", "n"]
    prior = frame[(frame.suite == "yesno_prior") & (frame.metric == "p_yes")]
    result = json.loads((run_dir / "results.json").read_text())["suites"]["yesno_prior"]["result"]
    assert prior.value.tolist() == [result["mean_p_yes"]] and prior.ci_low.tolist() == [result["ci95"][0]]
    gaps = frame[(frame.suite == "negbias") & (frame.metric == "pr_gap")]
    assert set(gaps.group) >= {"plain/correct", "plain/insufficient"}
    import biasaudit

    assert biasaudit.load_run(run_dir).document == load_run(run_dir).document


def test_report_command_rerenders_and_fails_clearly(run_dir, tmp_path):
    from typer.testing import CliRunner

    from biasaudit.cli import app

    runner = CliRunner()
    (run_dir / "report.html").unlink(missing_ok=True)
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file() and "report:" in result.output
    missing = runner.invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 2 and "results.json not found" in missing.output

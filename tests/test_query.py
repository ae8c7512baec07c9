"""jobs query and jobs report on the outputs of two real demo jobs (unpruned and pruned)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from jobs.cli import entry
from tests.conftest import REPO

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> dict[str, Path]:
    """The demo job run twice on the bundled logs: without pruning and with the tuned default."""
    root = tmp_path_factory.mktemp("query")
    out = {}
    for name, prune in (("unpruned", "none"), ("pruned", "tuned")):
        out[name] = root / name
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobs",
                "demo",
                "--redis-url",
                redis_url,
                "--redis-prefix",
                "querytest",
                "--output",
                str(out[name]),
                "--prune",
                prune,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
            env={**os.environ, "RAY_ADDRESS": ""},
        )
        assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def rows(runs: dict[str, Path]) -> list[dict[str, Any]]:
    return [r for p in sorted(runs["pruned"].glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def jobs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """The CLI in-process, through the same entry point (and exit-code mapping) as the console script."""
    monkeypatch.setattr(sys, "argv", ["jobs", *args])
    try:
        entry()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["id"] for r in records)


FILTERS: list[tuple[list[str], Any]] = [
    (["--tenant", "acme"], lambda r: r["tenant"] == "acme"),
    (["--tenant", "acme,globex"], lambda r: r["tenant"] in ("acme", "globex")),
    (["--intent", "card_arrival", "--intent", "pin_blocked"], lambda r: r["intent"] in ("card_arrival", "pin_blocked")),
    (["--status", "empty_text"], lambda r: r["status"] == "empty_text"),
    (["--min-score", "0.8"], lambda r: r["score"] is not None and r["score"] >= 0.8),
    (["--max-score", "0.3"], lambda r: r["score"] is not None and r["score"] <= 0.3),
    (["--where", "tokens>=20"], lambda r: r["tokens"] >= 20),
    (["--where", "tokens_kept<tokens"], None),  # a column on the right is a value, not a column: an error
    (["--where", "text~CARD"], lambda r: r["text"] is not None and "card" in r["text"].lower()),
    (["--where", "id=u00200"], lambda r: r["id"] == "u00200"),
    (["--where", "status!=ok"], lambda r: r["status"] != "ok"),
    (
        ["--tenant", "acme", "--intent", "exchange_rate", "--min-score", "0.6", "--where", "tokens<=10"],
        lambda r: r["tenant"] == "acme" and r["intent"] == "exchange_rate" and r["score"] >= 0.6 and r["tokens"] <= 10,
    ),
]


@pytest.mark.parametrize(("args", "keep"), FILTERS, ids=[" ".join(a) for a, _ in FILTERS])
def test_filters(
    args: list[str], keep: Any, runs: dict[str, Path], rows: list[dict[str, Any]], capsys, monkeypatch
) -> None:
    code, out, err = jobs(capsys, monkeypatch, "query", str(runs["pruned"]), *args, "--format", "json")
    if keep is None:
        assert code == 2 and "numeric" in err
        return
    assert code == 0, err
    expected = [r for r in rows if keep(r)]
    assert expected, "the filter should select something on the demo output"
    assert ids(as_json(out)) == ids(expected)


def test_count_by(runs: dict[str, Path], rows: list[dict[str, Any]], capsys, monkeypatch) -> None:
    code, out, err = jobs(
        capsys, monkeypatch, "query", str(runs["pruned"]), "--count-by", "tenant,status", "--format", "json"
    )
    assert code == 0, err
    got = {(r["tenant"], r["status"]): r["rows"] for r in as_json(out)}
    assert got == dict(Counter((r["tenant"], r["status"]) for r in rows))
    counts = [r["rows"] for r in as_json(out)]
    assert counts == sorted(counts, reverse=True)
    code, out, _ = jobs(capsys, monkeypatch, "query", str(runs["pruned"]), "--status", "ok", "--count-by", "intent")
    assert code == 0
    got_csv = {r["intent"]: int(r["rows"]) for r in csv.DictReader(io.StringIO(out))}
    assert got_csv == dict(Counter(r["intent"] for r in rows if r["status"] == "ok"))


def test_columns_and_limit(runs: dict[str, Path], capsys, monkeypatch) -> None:
    code, out, err = jobs(
        capsys, monkeypatch, "query", str(runs["pruned"]), "--columns", "id,intent", "--limit", "7", "--format", "json"
    )
    assert code == 0, err
    got = as_json(out)
    assert len(got) == 7 and all(set(r) == {"id", "intent"} for r in got)


def test_formats_agree(runs: dict[str, Path], rows: list[dict[str, Any]], tmp_path: Path, capsys, monkeypatch) -> None:
    base = ["query", str(runs["pruned"]), "--tenant", "acme"]
    expected = [r for r in rows if r["tenant"] == "acme"]
    code, out, _ = jobs(capsys, monkeypatch, *base, "--format", "csv")
    assert code == 0
    from_csv = list(csv.DictReader(io.StringIO(out)))
    assert ids(from_csv) == ids(expected)
    assert {r["id"]: r["intent"] for r in from_csv} == {r["id"]: r["intent"] or "" for r in expected}
    code, _, _ = jobs(capsys, monkeypatch, *base, "--format", "parquet", "--out", str(tmp_path / "q.parquet"))
    assert code == 0
    back = pq.read_table(tmp_path / "q.parquet").to_pylist()
    assert sorted(back, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    code, _, _ = jobs(capsys, monkeypatch, *base, "--format", "json", "--out", str(tmp_path / "q.jsonl"))
    assert code == 0 and ids(as_json((tmp_path / "q.jsonl").read_text())) == ids(expected)
    code, out, _ = jobs(capsys, monkeypatch, *base, "--format", "table", "--limit", "3", "--columns", "id,intent")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["id", "intent"] and lines[-1] == "(3 rows)" and len(lines) == 6
    code, out, _ = jobs(capsys, monkeypatch, *base, "--format", "table")
    assert code == 0 and "first 50 rows shown" in out


def test_sql(runs: dict[str, Path], rows: list[dict[str, Any]], capsys, monkeypatch) -> None:
    sql = "SELECT tenant, count(*) AS n, sum(tokens_kept) AS kept FROM labelled GROUP BY tenant ORDER BY tenant"
    code, out, err = jobs(capsys, monkeypatch, "query", str(runs["pruned"]), "--sql", sql, "--format", "json")
    assert code == 0, err
    expected = {}
    for r in rows:
        n, kept = expected.get(r["tenant"], (0, 0))
        expected[r["tenant"]] = (n + 1, kept + r["tokens_kept"])
    assert {r["tenant"]: (r["n"], r["kept"]) for r in as_json(out)} == expected
    # the filters narrow the view the SQL sees
    code, out, _ = jobs(
        capsys,
        monkeypatch,
        "query",
        str(runs["pruned"]),
        "--status",
        "ok",
        "--sql",
        "SELECT count(*) AS n FROM labelled",
    )
    assert code == 0 and out.splitlines()[1] == str(sum(r["status"] == "ok" for r in rows))


def test_reads_a_uri(runs: dict[str, Path], rows: list[dict[str, Any]], capsys, monkeypatch) -> None:
    code, out, err = jobs(
        capsys, monkeypatch, "query", f"file://{runs['pruned']}", "--count-by", "status", "--format", "json"
    )
    assert code == 0, err
    assert sum(r["rows"] for r in as_json(out)) == len(rows)


ERRORS = [
    (["--where", "nosuch=1"], "no column 'nosuch'"),
    (["--where", "tokens"], "expected COLUMN OP VALUE"),
    (["--where", "=3"], "expected COLUMN OP VALUE"),
    (["--where", "tokens>=many"], "expected a number"),
    (["--columns", "id,nosuch"], "no column 'nosuch'"),
    (["--count-by", "nosuch"], "no column 'nosuch'"),
    (["--sql", "SELEC * FROM labelled"], "syntax error"),
    (["--sql", "SELECT nosuch FROM labelled"], "nosuch"),
    (["--sql", "DROP VIEW labelled"], "one read-only SELECT"),
    (["--sql", "SELECT 1; DROP VIEW labelled"], "one read-only SELECT"),
    (["--sql", "SELECT * FROM read_text('/etc/hostname')"], "disabled"),
    (["--sql", "SELECT 1", "--count-by", "status"], "--sql replaces"),
    (["--format", "parquet"], "needs --out"),
    (["--status", "ok,out-of-scope"], "unknown status 'out-of-scope'; the statuses are ok, out_of_scope"),
    (["--out", "/nonexistent/hits.csv"], "the folder '/nonexistent' of '/nonexistent/hits.csv' does not exist"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_queries_exit_2(args: list[str], message: str, runs: dict[str, Path], capsys, monkeypatch) -> None:
    code, out, err = jobs(capsys, monkeypatch, "query", str(runs["pruned"]), *args)
    assert code == 2, (out, err)
    assert message in err


def test_not_an_output_folder_and_partial_output(runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = jobs(capsys, monkeypatch, "query", str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in err
    code, _, err = jobs(capsys, monkeypatch, "query", str(tmp_path))
    assert code == 2 and "no part-*.parquet" in err
    partial = tmp_path / "partial"
    partial.mkdir()
    first = sorted(runs["pruned"].glob("part-*.parquet"))[0]
    shutil.copy(first, partial / first.name)
    code, out, err = jobs(capsys, monkeypatch, "query", str(partial), "--count-by", "status", "--format", "json")
    assert code == 0 and "no _SUCCESS" in err
    assert sum(r["rows"] for r in as_json(out)) == pq.read_metadata(first).num_rows


def test_exit_code_from_the_console_script(runs: dict[str, Path]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "jobs", "query", str(runs["pruned"]), "--where", "bogus>1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 2 and "no column 'bogus'" in r.stderr and "Traceback" not in r.stderr


# ---- jobs report -------------------------------------------------------------------------------


def cells(table: str) -> dict[str, list[str]]:
    out = {}
    for line in table.splitlines()[2:]:
        if line.startswith("|"):
            parts = [c.strip() for c in line.strip("|").split("|")]
            out[parts[0]] = parts[1:]
    return out


def test_compare_prints_correct_ratios(runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:
    png = tmp_path / "compare.png"
    code, out, err = jobs(
        capsys,
        monkeypatch,
        "report",
        "compare",
        str(runs["unpruned"]),
        str(runs["pruned"] / "_report.json"),
        "--plot",
        str(png),
    )
    assert code == 0, err
    a = json.loads((runs["unpruned"] / "_report.json").read_text())
    b = json.loads((runs["pruned"] / "_report.json").read_text())
    table = cells(out)
    assert out.splitlines()[0].split("|")[2].strip() == "unpruned"
    assert table["rows/s (job)"] == [
        f"{a['rows_per_s']:.1f}",
        f"{b['rows_per_s']:.1f}",
        f"{b['rows_per_s'] / a['rows_per_s']:.2f}x",
    ]
    assert table["wall s"][2] == f"{b['wall_s'] / a['wall_s']:.2f}x"
    assert table["tokens kept %"] == [
        f"{a['tokens_kept_pct']:.1f}",
        f"{b['tokens_kept_pct']:.1f}",
        f"{b['tokens_kept_pct'] / a['tokens_kept_pct']:.2f}x",
    ]
    assert a["tokens_kept_pct"] == 100.0 and b["tokens_kept_pct"] < 100.0
    busy = [sum(x["busy_rows_per_s"] for x in r["actors"].values()) / len(r["actors"]) for r in (a, b)]
    assert table["busy rows/s per actor (mean)"][2] == f"{busy[1] / busy[0]:.2f}x"
    assert "config differs: prune is None in unpruned" in err
    from PIL import Image

    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 600 and img.size[1] > 200


def test_report_show_and_bad_reports(runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:
    code, out, _ = jobs(capsys, monkeypatch, "report", "show", str(runs["pruned"]))
    report = json.loads((runs["pruned"] / "_report.json").read_text())
    assert code == 0 and f"job {report['job_id']}" in out and "tokens kept" in out and "actors:" in out
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "other.json").write_text('{"rows": 1}')
    for bad, message in (
        (tmp_path / "missing.json", "no such report"),
        (tmp_path, "no such report"),
        (tmp_path / "list.json", "a JSON list"),
        (tmp_path / "broken.json", "not valid JSON"),
        (tmp_path / "other.json", "missing wall_s"),
    ):
        code, _, err = jobs(capsys, monkeypatch, "report", "compare", str(runs["pruned"]), str(bad))
        assert code == 2 and message in err, (bad, err)
    code, _, err = jobs(capsys, monkeypatch, "report", "compare", str(runs["pruned"]))
    assert code == 2 and "at least two" in err
    for plot, message in (
        (tmp_path / "no" / "x.png", "does not exist; create it first"),
        (tmp_path / "x.txt", "must end in"),
    ):
        code, _, err = jobs(
            capsys, monkeypatch, "report", "compare", str(runs["pruned"]), str(runs["pruned"]), "--plot", str(plot)
        )
        assert code == 2 and message in err and not plot.exists(), (plot, err)


def test_compare_warns_when_hardware_or_input_differ(runs: dict[str, Path], tmp_path: Path) -> None:
    from jobs.compare import Run, load, warnings
    from jobs.report_schema import Report

    a = load(str(runs["pruned"]))
    other = a.report.to_dict()
    other["hardware"]["cpus"] = 64
    flip = {"float32": "bfloat16", "bfloat16": "float32"}
    other["placement"] = [{**p, "dtype": flip[p["dtype"]]} for p in other["placement"]]
    other["rows"]["planned"] += 1
    got = warnings([a, Run("other", "x", Report.from_dict(other))])
    assert any("hardware differs: cpus" in w for w in got)
    assert any("actors ran a different dtype" in w for w in got)
    assert any("input differs" in w for w in got)
    assert any("did not complete" in w for w in got)
    assert warnings([a, a]) == []

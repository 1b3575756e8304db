"""The reproduction contract (Claim/Report), the index page and the klsim CLI."""

from __future__ import annotations

import json
import math

import pytest

from klsim.cli import main as klsim_main
from papers_repro._harness import (
    Report,
    claim_close,
    claim_leq,
    claim_true,
    list_scripts,
    load_script,
    write_index,
)


def test_claim_helpers_can_fail():
    assert claim_close("a", 1.0, 1.0 + 1e-12, 1e-10).passed
    assert not claim_close("a", 1.0, 1.1, 1e-10).passed
    assert not claim_close("nan", math.nan, 0.0, 1.0).passed
    assert claim_leq("b", 1.0, 1.0).passed
    assert not claim_leq("b", 1.0 + 1e-9, 1.0, tol=1e-12).passed
    assert not claim_true("c", False, 1, 2).passed


def test_report_write_and_index(tmp_path):
    r = Report("demo", data={"x": [1.0, 2.0]})
    r.add(claim_close("ok", 0.0, 0.0, 1e-12))
    r.add(claim_leq("bad", 2.0, 1.0))
    assert not r.passed
    r.write(tmp_path / "demo")
    data = json.loads((tmp_path / "demo" / "claims.json").read_text())
    assert [c["passed"] for c in data["claims"]] == [True, False]
    assert "FAIL" in (tmp_path / "demo" / "report.md").read_text()
    index = write_index({"demo": r}, tmp_path)
    html = index.read_text()
    assert "1/2 claims pass" in html and "FAIL" in html


def test_unknown_script_lists_valid_names():
    with pytest.raises(ValueError, match="unknown reproduction 'nope'; valid:"):
        load_script("nope")


def test_cli_repro_list_matches_modules(capsys):
    assert klsim_main(["repro", "list"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == list_scripts()


def test_cli_unknown_name_exit_code(tmp_path, capsys):
    assert klsim_main(["repro", "run", "no-such-paper", "--out", str(tmp_path)]) == 2
    assert "unknown reproduction" in capsys.readouterr().err

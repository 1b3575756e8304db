"""The estimator audit and its reproduction script."""

import json

import pytest

pytest.importorskip("torch")

from klsim_llm.audit import kl_audit, write_audit  # noqa: E402

pytestmark = pytest.mark.llm


def test_audit_reproduces_every_known_fact(tmp_path):
    res = kl_audit()
    assert len(res.facts) == 11
    failed = [f["fact"] for f in res.facts if not f["passed"]]
    assert not failed, failed
    paths = write_audit(res, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == len(res.rows) and paths["figure"].stat().st_size > 0
    row = {(r.name, r.fixture, r.sampling): r for r in res.rows}
    assert row[("preset:trl_ppo_k3", "one_step", "on_policy")].verdict.startswith("biased")
    assert row[("preset:trl_rloo", "two_token", "on_policy")].verdict == "unbiased (sequence RKL)"
    # RLOO token / sequence KL options (TRL #2562): same expectation, different variance
    a = row[("preset:trl_rloo", "two_token", "on_policy")]
    b = row[("preset:trl_ppo_k1", "two_token", "on_policy")]
    assert a.bias_rkl <= 1e-9 and b.bias_rkl <= 1e-9 and abs(a.variance - b.variance) > 1e-3


def test_trl_grpo_loss_code_matches_klsim_llm():
    """TRL's own GRPOTrainer._compute_loss on the same tensors = the matching klsim_llm entry (value, gradient)."""
    pytest.importorskip("trl")
    from klsim_llm.audit import trl_crosscheck

    rows = trl_crosscheck()
    assert len(rows) == 9
    for r in rows:
        assert r["value_gap"] <= 1e-12 and r["grad_gap"] <= 1e-12, r


def test_audit_rejects_unknown_preset():
    with pytest.raises(ValueError, match="unknown"):
        kl_audit(["trl_grpoo"])


@pytest.mark.slow
def test_repro_kl_estimators_quick(tmp_path):
    from papers_repro._harness import run_module

    report = run_module("kl_estimators", tmp_path, quick=True)
    assert report.passed, [c for c in report.claims if not c.passed]

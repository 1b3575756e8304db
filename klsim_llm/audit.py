"""The KL-estimator audit (spec ``llm-bridge.md`` §2.4): exact expected gradients of every estimator ×
placement × sampling × aggregation × clamp combination that TRL, verl and OpenRLHF use, on tabular LMs.

For each combination and fixture it reports the exact expected gradient g = E_q[∇ℓ] (q = π_θ on-policy, a
different π_old off-policy), its distance to ∇RKL_seq, ∇FKL_seq and the per-step (partial) gradients, the
implied divergence (least-squares fit of g on ∇RKL_seq and ∇FKL_seq, plus residual), the exact per-sample
variance E_q‖∇ℓ − g‖², and the clamp-saturation mass.  Everything is computed by enumeration from the
klsim twins (``klsim.sequence``), which the parity test ties to the torch losses at 1e-10.

Output: Markdown and JSON tables and a figure (``klsim-llm audit``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from klsim.sequence import (
    PRESET_SPECS,
    TWINS,
    expected_loss,
    partial_fkl_grad,
    partial_rkl_grad,
    seq_fkl,
    seq_rkl,
)

__all__ = [
    "FIXTURES",
    "AuditRow",
    "AuditResult",
    "audit_combination",
    "kl_audit",
    "known_facts",
    "run_audit_cli",
]

FIXTURES: dict[str, dict] = {
    "one_step": dict(n_prompts=2, n_vocab=4, max_len=1),
    "two_token": dict(n_prompts=1, n_vocab=3, max_len=2),
}
"""Tabular fixtures: one-step (bandit) and the 2-token / V = 3 fixture of spec §9 claim 2."""

_TOL = 1e-9


@dataclass
class AuditRow:
    """One audited combination on one fixture (norms are relative to ‖∇RKL_seq‖)."""

    name: str
    fixture: str
    sampling: str
    config: dict
    grad_norm: float
    bias_rkl: float
    bias_fkl: float
    bias_partial_rkl: float
    bias_partial_fkl: float
    fit_rkl: float
    fit_fkl: float
    fit_residual: float
    variance: float
    clamp_mass: float
    rkl_norm: float
    bias_partial_rkl_sampler: float
    follows: str
    verdict: str
    fixed_point_kl: float | None = None
    fixed_point_converged: bool | None = None


@dataclass
class AuditResult:
    """All rows plus the known-facts checks."""

    rows: list[AuditRow]
    facts: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "facts": self.facts}

    def to_markdown(self) -> str:
        head = (
            "| combination | fixture | sampling | ‖g−∇RKL‖ | ‖g−∇FKL‖ | ‖g−∂RKL‖ | ‖g−∂FKL‖ | fit a·RKL+b·FKL (res) "
            "| variance | clamp mass | KL(π*‖π_fp) | follows | verdict |"
        )
        lines = [head, "|" + "---|" * 13]
        for r in self.rows:
            lines.append(
                f"| {r.name} | {r.fixture} | {r.sampling} | {r.bias_rkl:.2e} | {r.bias_fkl:.2e} | "
                f"{r.bias_partial_rkl:.2e} | {r.bias_partial_fkl:.2e} | {r.fit_rkl:+.3f}, {r.fit_fkl:+.3f} "
                f"({r.fit_residual:.1e}) | {r.variance:.3e} | {r.clamp_mass:.3f} | "
                f"{_fp(r)} | {r.follows} | {r.verdict} |"
            )
        lines += ["", "| known fact | measured | tolerance | passed |", "|---|---|---|---|"]
        for f in self.facts:
            lines.append(
                f"| {f['fact']} | {f['measured']:.3e} | {f['tolerance']} | {'yes' if f['passed'] else 'NO'} |"
            )
        return "\n".join(lines) + "\n"


def _fp(r: AuditRow) -> str:
    if r.fixed_point_kl is None:
        return "—"
    return f"{r.fixed_point_kl:.2e}" + ("" if r.fixed_point_converged else " (no convergence)")


def _problem(fixture: str, sampling: str, seed: int):
    from klsim_llm.tabular_lm import make_problem

    off = sampling == "off_policy"
    return make_problem(seed=seed, sampler="old" if off else "policy", off_policy=off, **FIXTURES[fixture])


def _targets(pr):
    _, g_r = seq_rkl(pr.policy, pr.ref, pr.enum)
    _, g_f = seq_fkl(pr.policy, pr.ref, pr.enum)
    q = pr.old if pr.old is not None else pr.policy
    return {
        "rkl": g_r,
        "fkl": g_f,
        "prkl": partial_rkl_grad(pr.policy, pr.ref, pr.enum),
        "pfkl": partial_fkl_grad(pr.policy, pr.ref, pr.enum),
        "prkl_q": partial_rkl_grad(pr.policy, pr.ref, pr.enum, sampler=q),
    }


def _clamp_mass(pr, cfg: dict) -> float:
    b = pr.batch()
    m = b["mask"].astype(float)
    delta = b["logp"] - b["ref_logp"]
    sat = np.zeros_like(m, dtype=bool)
    if cfg.get("log_ratio_clamp") is not None:
        sat |= np.abs(delta) > cfg["log_ratio_clamp"]
    if cfg.get("kl_clamp") is not None:
        k3 = np.expm1(-delta) + delta
        sat |= np.abs(k3) > cfg["kl_clamp"]
    frac = (sat * m).sum((1, 2)) / np.maximum(m.sum((1, 2)), 1.0)
    return float(np.sum(pr.samples.weight * frac))


def _follows(d: dict, scale: float, gnorm: float) -> str:
    if gnorm <= _TOL * max(scale, 1.0):
        return "0"
    names = {"rkl": "∇RKL_seq", "fkl": "∇FKL_seq", "prkl": "per-step ∇RKL", "pfkl": "per-step ∇FKL"}
    hits = [names[k] for k in ("rkl", "prkl", "fkl", "pfkl") if d[k] <= _TOL]
    if not hits and d["prkl_q"] <= _TOL:
        hits = ["per-step ∇RKL (sampler's prefixes)"]
    return " = ".join(hits) if hits else "other"


def audit_combination(
    name: str, twin, fixture: str, sampling: str, *, seed: int = 0, config: dict | None = None
) -> AuditRow:
    """Audit one twin (a callable ``twin(batch) -> TwinOut``) on one fixture and sampling mode."""
    pr = _problem(fixture, sampling, seed)
    out = twin(pr.batch())
    _, g, rows = expected_loss(pr.policy, pr.enum, pr.samples, out, per_sample=True)
    t = _targets(pr)
    scale = float(np.linalg.norm(t["rkl"]))
    d = {k: float(np.linalg.norm(g - v)) / scale for k, v in t.items()}
    A = np.stack([t["rkl"].ravel(), t["fkl"].ravel()], 1)
    coef, *_ = np.linalg.lstsq(A, g.ravel(), rcond=None)
    resid = float(np.linalg.norm(A @ coef - g.ravel())) / scale
    w = pr.samples.weight / pr.samples.weight.sum()
    var = float(np.sum(w * np.sum((rows - g.ravel()) ** 2, 1)))
    gnorm = float(np.linalg.norm(g))
    follows = _follows(d, scale, gnorm)
    if d["rkl"] <= _TOL:
        verdict = "unbiased (sequence RKL)"
    elif follows == "0":
        verdict = "no regularization (E∇ = 0)"
    elif d["prkl"] <= _TOL or d["prkl_q"] <= _TOL:
        verdict = "per-step RKL (partial)"
    elif d["fkl"] <= _TOL or d["pfkl"] <= _TOL:
        verdict = "biased: follows FKL"
    else:
        verdict = "biased"
    return AuditRow(
        name,
        fixture,
        sampling,
        dict(config or {}),
        gnorm / scale,
        d["rkl"],
        d["fkl"],
        d["prkl"],
        d["pfkl"],
        float(coef[0]),
        float(coef[1]),
        resid,
        var,
        _clamp_mass(pr, config or {}),
        scale,
        d["prkl_q"],
        follows,
        verdict,
        *(
            implied_fixed_point_kl(twin, pr)
            if (fixture == "one_step" and sampling == "on_policy")
            else (None, None)
        ),
    )


def implied_fixed_point_kl(
    twin, pr, beta: float = 0.5, lr: float = 1.0, n_iter: int = 60
) -> tuple[float, bool]:
    """KL(π*‖π_fp) on a one-step fixture: π_fp is reached by exact expected-gradient (natural-gradient) descent
    on −E[R] + β·(the KL term of ``twin``) from π_ref; π* ∝ π_ref·e^{R/β} is the optimum of the true objective.

    Returns (KL, converged); converged means the last step moved the logits by < 1e-9 (otherwise the
    iteration diverges or oscillates and the KL is the value after ``n_iter`` steps)."""
    from klsim.divergences import kl_divergence, log_softmax
    from klsim.sequence import gather_batch, seq_objective_grad, single_samples

    if pr.enum.max_len != 1:
        raise ValueError("implied_fixed_point_kl: one-step fixtures only")
    ref = pr.ref
    lm = ref
    tok = pr.enum.tokens[:, 0]
    w = ref.prompt_weights[:, None, None]
    for _ in range(n_iter):
        samples = single_samples(lm, pr.enum)
        batch = gather_batch(pr.enum, samples, lm, ref, None, pr.rewards)
        _, g_kl = expected_loss(lm, pr.enum, samples, twin(batch))
        _, g_r = seq_objective_grad(lm, pr.enum, -pr.rewards)
        step = lr * (g_r + beta * g_kl) / (np.exp(lm.log_policy) * w)
        step = step - step.mean(-1, keepdims=True)
        z = lm.logits - step
        if not np.all(np.isfinite(z)) or np.max(np.abs(z)) > 700:
            break
        lm = lm.with_logits(z - z.max(-1, keepdims=True))
    converged = bool(np.all(np.isfinite(step)) and np.max(np.abs(step)) < 1e-9)
    star = log_softmax(ref.log_policy[:, 0, tok] + pr.rewards / beta)
    return float(np.sum(ref.prompt_weights * kl_divergence(star, lm.log_policy[:, 0, tok]))), converged


def _grid() -> dict[str, tuple]:
    """Estimator × placement combinations (seq_sum, no clamp) plus every framework preset."""
    combos: dict[str, tuple] = {}
    for est in ("k1", "k2", "k3", "k3_rho", "k2_rho", "k3_st", "is_k1", "rtg", "fv_partial", "fv_rtg"):
        combos[f"{est}/loss"] = (TWINS["kl_estimators"][est], {"estimator": est, "placement": "loss"})
    for est in ("k1", "k2", "k3"):
        tw = TWINS["kl_estimators"][est]
        combos[f"{est}/reward"] = (
            lambda b, _tw=tw: _tw(b, placement="reward"),
            {"estimator": est, "placement": "reward"},
        )
    for p, spec in PRESET_SPECS.items():
        combos[f"preset:{p}"] = (TWINS["presets"][p], spec)
    return combos


def kl_audit(
    presets: list[str] | None = None,
    *,
    seed: int = 0,
    fixtures: tuple[str, ...] = ("one_step", "two_token"),
    samplings: tuple[str, ...] = ("on_policy", "off_policy"),
) -> AuditResult:
    """Run the audit over ``presets`` (names of :data:`klsim.sequence.PRESET_SPECS`; ``None``: the whole grid)."""
    grid = _grid()
    if presets is not None:
        unknown = [p for p in presets if f"preset:{p}" not in grid]
        if unknown:
            raise ValueError(f"presets: unknown {unknown}; valid: {', '.join(PRESET_SPECS)}")
        grid = {f"preset:{p}": grid[f"preset:{p}"] for p in presets}
    rows = [
        audit_combination(n, tw, f, s, seed=seed, config=cfg)
        for n, (tw, cfg) in grid.items()
        for f in fixtures
        for s in samplings
    ]
    res = AuditResult(rows)
    if presets is None:
        res.facts = known_facts(res)
    return res


def _row(res: AuditResult, name: str, fixture: str, sampling: str = "on_policy") -> AuditRow:
    return next(r for r in res.rows if (r.name, r.fixture, r.sampling) == (name, fixture, sampling))


def known_facts(res: AuditResult) -> list[dict]:
    """The facts of spec §2.1 / §9 claim 2 read off the audit rows (each with its tolerance)."""
    out = []

    def add(fact, measured, tol, passed):
        ids = [
            "k1_loss_zero_grad",
            "k3_loss_is_fkl",
            "k3_loss_is_partial_fkl_2tok",
            "rho_k3_unbiased_on_off",
            "k2_unbiased_on_policy_only",
            "k3_reward_is_rkl_minus_fkl",
            "k1_reward_unbiased",
            "nash_md_per_token_biased",
            "rtg_fv_rtg_unbiased",
            "rho_k2_biased",
            "fixed_point_pi_star",
        ]
        out.append(
            {
                "id": ids[len(out)],
                "fact": fact,
                "measured": float(measured),
                "tolerance": tol,
                "passed": bool(passed),
            }
        )

    g = _row(res, "k1/loss", "two_token").grad_norm
    add("k1 as a loss has zero expected gradient (‖E∇‖/‖∇RKL‖)", g, 1e-12, g <= 1e-12)
    r = _row(res, "k3/loss", "one_step")
    add("k3 as a loss follows ∇FKL (one step)", r.bias_fkl, _TOL, r.bias_fkl <= _TOL and r.bias_rkl > 1e-3)
    r = _row(res, "k3/loss", "two_token")
    add(
        "k3 as a loss follows the per-step ∇FKL (2 tokens)",
        r.bias_partial_fkl,
        _TOL,
        r.bias_partial_fkl <= _TOL,
    )
    worst = max(
        _row(res, "k3_rho/loss", "two_token", s).bias_partial_rkl_sampler for s in ("on_policy", "off_policy")
    )
    r1 = _row(res, "k3_rho/loss", "one_step", "off_policy")
    add(
        "ρ·k3 (differentiable ρ) is unbiased for per-step ∇RKL, on- and off-policy",
        max(worst, r1.bias_rkl),
        _TOL,
        max(worst, r1.bias_rkl) <= _TOL,
    )
    on, off = _row(res, "k2/loss", "one_step"), _row(res, "k2/loss", "one_step", "off_policy")
    add(
        "k2 as a loss is unbiased on-policy only (off-policy bias ≥ 1e-3)",
        on.bias_rkl,
        _TOL,
        on.bias_rkl <= _TOL and off.bias_rkl >= 1e-3,
    )
    r = _row(res, "k3/reward", "one_step")
    add(
        "k3 in the reward is biased: E∇ = ∇RKL − ∇FKL",
        abs(r.fit_rkl - 1) + abs(r.fit_fkl + 1) + r.fit_residual,
        _TOL,
        abs(r.fit_rkl - 1) + abs(r.fit_fkl + 1) + r.fit_residual <= _TOL and r.bias_rkl > 1e-3,
    )
    r = _row(res, "k1/reward", "two_token")
    add("k1 in the reward is unbiased for ∇RKL_seq on-policy", r.bias_rkl, _TOL, r.bias_rkl <= _TOL)
    r2, r1 = _row(res, "preset:trl_nash_md", "two_token"), _row(res, "preset:trl_nash_md", "one_step")
    gap = r2.bias_rkl * r2.rkl_norm
    add(
        "per-token Nash-MD pairing is biased on 2 tokens (‖gap‖ ≥ 0.05), exact on one token",
        gap,
        0.05,
        gap >= 0.05 and r1.bias_rkl <= _TOL,
    )
    worst = max(_row(res, n, "two_token").bias_rkl for n in ("rtg/loss", "fv_rtg/loss", "preset:library_rtg"))
    add("rtg and fv_rtg (sequence level) are unbiased for ∇RKL_seq", worst, _TOL, worst <= _TOL)
    r = _row(res, "k2_rho/loss", "one_step")
    add("ρ·k2 is biased", r.bias_rkl, 1e-3, r.bias_rkl >= 1e-3)
    rows_ok = [_row(res, n, "one_step") for n in ("k1/reward", "rtg/loss", "k3_rho/loss")]
    good = max(r.fixed_point_kl for r in rows_ok) if all(r.fixed_point_converged for r in rows_ok) else np.inf
    bad = _row(res, "k3/loss", "one_step").fixed_point_kl
    add(
        "implied fixed point: unbiased estimators reach π* (KL ≤ 1e-8), the k3 loss does not (KL ≥ 1e-3)",
        good,
        1e-8,
        good <= 1e-8 and bad >= 1e-3,
    )
    return out


def audit_figure(res: AuditResult, out: Path) -> Path:
    """Bar chart: relative bias to ∇RKL_seq and ∇FKL_seq per combination (two-token fixture, on-policy)."""
    from klsim.plotting import new_figure, save_figure

    rows = [r for r in res.rows if r.fixture == "two_token" and r.sampling == "on_policy"]
    fig, axes = new_figure(1, 2, width=7.5, height=max(3.0, 0.22 * len(rows)))
    y = np.arange(len(rows))
    for ax, key, title in (
        (axes[0, 0], "bias_rkl", "‖E∇ − ∇RKL_seq‖/‖∇RKL_seq‖"),
        (axes[0, 1], "variance", "per-sample variance E‖∇ℓ − E∇‖²"),
    ):
        vals = np.array([max(getattr(r, key), 1e-17) for r in rows])
        ax.barh(y, vals, color=["tab:green" if r.bias_rkl <= _TOL else "tab:red" for r in rows])
        ax.set_xscale("log")
        ax.set_yticks(y)
        ax.set_yticklabels([r.name for r in rows], fontsize=6)
        ax.set_title(title, fontsize=8)
    return save_figure(fig, out, "kl_estimator_audit")


def write_audit(res: AuditResult, out: Path) -> dict[str, Path]:
    """Write ``audit.md``, ``audit.json`` and the figure into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "audit.md"
    md.write_text(res.to_markdown())
    js = out / "audit.json"
    js.write_text(json.dumps(res.to_json(), indent=1, default=float))
    return {"markdown": md, "json": js, "figure": audit_figure(res, out)}


def run_audit_cli(presets: list[str] | None, out: Path, seed: int = 0) -> int:
    """``klsim-llm audit``: run, write, print the facts; exit 1 if a known fact fails."""
    res = kl_audit(presets, seed=seed)
    paths = write_audit(res, out)
    try:
        rows = trl_crosscheck(seed)
    except ImportError:
        print("TRL not importable: TRL cross-check skipped")
    else:
        (Path(out) / "trl_crosscheck.json").write_text(json.dumps(rows, indent=1))
        lines = [
            "",
            "## TRL cross-check (TRL's GRPO loss code on the same tensors)",
            "",
            "| TRL setting | klsim_llm entry | value gap | gradient gap |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['trl']} | {r['klsim_llm']} | {r['value_gap']:.1e} | {r['grad_gap']:.1e} |" for r in rows
        ]
        with open(paths["markdown"], "a") as fh:
            fh.write("\n".join(lines) + "\n")
        worst = max(max(r["value_gap"], r["grad_gap"]) for r in rows)
        print(f"TRL cross-check: {len(rows)} settings, max gap {worst:.1e}")
    for f in res.facts:
        print(f"{'PASS' if f['passed'] else 'FAIL'}  {f['fact']}  (measured {f['measured']:.3e})")
    print(f"wrote {paths['markdown']}, {paths['json']}, {paths['figure']}")
    return 0 if all(f["passed"] for f in res.facts) else 1


# --- TRL cross-check: TRL's own GRPO loss code on the same tensors ---------------------------------------------


class _IdentityAccelerator:
    num_processes = 1

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _trl_grpo_loss(
    logp, ref_logp, old_logp, mask, advantages, *, beta, loss_type, bias_correction, is_level, eps=0.2
):
    """Call ``trl.GRPOTrainer._compute_loss`` (TRL's code, unmodified) with a stand-in ``self`` whose log-prob
    function returns ``logp``; everything else (ratios, k3, IS correction, clipping, aggregation) is TRL's."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch
    from trl.trainer.grpo_trainer import GRPOTrainer

    B, T = logp.shape
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=is_level,
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=bias_correction, delta=None),
        loss_type=loss_type,
        epsilon_low=eps,
        epsilon_high=eps,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        accelerator=_IdentityAccelerator(),
        _metrics=defaultdict(lambda: defaultdict(list)),
        max_completion_length=T,
    )
    inputs = {
        "prompt_ids": torch.zeros((B, 1), dtype=torch.long),
        "prompt_mask": torch.ones((B, 1), dtype=torch.long),
        "completion_ids": torch.zeros((B, T), dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": advantages,
        "ref_per_token_logps": ref_logp,
    }
    if old_logp is not None:
        inputs["old_per_token_logps"] = old_logp
    return GRPOTrainer._compute_loss(fake, None, inputs)


def trl_crosscheck(seed: int = 0) -> list[dict]:
    """Run TRL's GRPO loss and the matching klsim_llm entry on the same tensors; report value/gradient gaps.

    Raises ``ImportError`` when TRL is not installed.  Matches: ``loss_type`` grpo / bnpo / dr_grpo ↔ ``agg``
    seq_mean_token_mean / token_mean / seq_sum_over_maxlen; ``use_bias_correction_kl`` ↔ ``k3_rho`` (token or
    sequence IS); advantages = 0 isolates the KL term (↔ the presets ``trl_grpo`` / ``trl_grpo_bc`` /
    ``trl_grpo_bc_seq``); advantages ≠ 0 compares the whole clipped loss with ``OBJECTIVES['ppo']``.
    """
    import torch
    import trl  # noqa: F401

    from klsim_llm.registry import OBJECTIVES, PRESETS

    g = torch.Generator().manual_seed(seed)
    B, T = 6, 5
    base = torch.randn(B, T, generator=g, dtype=torch.float64) - 1.0
    ref = (base + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)).detach()
    old = (base + 0.1 * torch.randn(B, T, generator=g, dtype=torch.float64)).detach()
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 3:] = False
    mask[4, 1:] = False
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    agg = {"grpo": "seq_mean_token_mean", "bnpo": "token_mean", "dr_grpo": "seq_sum_over_maxlen"}
    rows = []

    def grads(fn):
        lp = base.clone().requires_grad_(True)
        loss = fn(lp)
        (gr,) = torch.autograd.grad(loss, lp)
        return float(loss.detach()), torch.where(mask, gr, torch.zeros_like(gr))

    beta = 0.3
    for bc, level, preset in (
        (False, "token", "trl_grpo"),
        (True, "token", "trl_grpo_bc"),
        (True, "sequence", "trl_grpo_bc_seq"),
    ):
        v_t, g_t = grads(
            lambda lp, bc=bc, level=level: _trl_grpo_loss(
                lp,
                ref,
                old,
                mask,
                torch.zeros(B, dtype=torch.float64),
                beta=beta,
                loss_type="bnpo",
                bias_correction=bc,
                is_level=level,
            )
        )
        v_k, g_k = grads(lambda lp, preset=preset: beta * PRESETS[preset].fn(lp, ref, mask, old_logp=old)[0])
        rows.append(
            {
                "trl": f"GRPO bnpo, β={beta}, use_bias_correction_kl={bc}, IS={level}, A=0",
                "klsim_llm": f"β·PRESETS['{preset}']",
                "value_gap": abs(v_t - v_k),
                "grad_gap": float((g_t - g_k).abs().max()),
            }
        )
    for lt in ("grpo", "bnpo", "dr_grpo"):
        for bc in (False, True):
            v_t, g_t = grads(
                lambda lp, lt=lt, bc=bc: _trl_grpo_loss(
                    lp, ref, old, mask, adv, beta=beta, loss_type=lt, bias_correction=bc, is_level="token"
                )
            )
            v_k, g_k = grads(
                lambda lp, lt=lt, bc=bc: OBJECTIVES["ppo"].fn(
                    lp,
                    ref,
                    mask,
                    adv,
                    old_logp=old,
                    baseline="none",
                    beta=beta,
                    kl_estimator="k3_rho" if bc else "k3",
                    kl_placement="loss",
                    agg=agg[lt],
                    clip_eps=(0.2, 0.2),
                )[0]
            )
            rows.append(
                {
                    "trl": f"GRPO loss_type={lt}, β={beta}, use_bias_correction_kl={bc}, ε=0.2",
                    "klsim_llm": f"OBJECTIVES['ppo'](agg={agg[lt]}, kl={'k3_rho' if bc else 'k3'} in loss)",
                    "value_gap": abs(v_t - v_k),
                    "grad_gap": float((g_t - g_k).abs().max()),
                }
            )
    return rows

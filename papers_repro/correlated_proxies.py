"""Correlated proxies and occupancy-measure regularization against reward hacking.

Laidlaw, Singhal, Dragan, "Correlated Proxies: A New Definition and Improved Mitigation for Reward Hacking",
ICLR 2025, arXiv:2403.03185 (earlier: "Preventing Reward Hacking with Occupancy Measure Regularization").
Spec: ``occupancy-regularization.md`` (§4 theory, §6 environments, §8 acceptance claims, §9 scripts).

Exact (tabular) reproduction on the tomato-watering board (Leike et al. 2017) and on random MDPs:

* the λ-sweep of every regularizer (action KL, occupancy KL, occupancy χ², occupancy √χ²) with base,
  true-optimal and proxy-optimal returns, λ*, λ_0, σ_R̃ and both lower bounds overlaid;
* the best-over-λ table (Table-1 style, exact rather than deep RL);
* the two-state counterexample of Proposition 3.1;
* Frank–Wolfe (tabular ORPO) gap against iterations.

Claims: both bounds hold with zero violations on ≥ 1,000 random MDPs; √χ²/χ² equivalence; saturation for
λ ≥ σ_R̃ (and exactly λ ≥ λ_0); the proxy-optimal policy hacks; χ²-occupancy beats action-KL (and
occupancy-KL) on best-over-λ true return; solvers agree; FW converges to the QP optimum.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from klsim.envs.tomato import BUCKET, CELL_INDEX, tomato_base_policy, tomato_tabular
from klsim.occupancy import (
    action_kl,
    bound_chain,
    chi2_occupancy,
    chi2_path_map,
    exact_penalty_orpo,
    frank_wolfe,
    greedy_policy,
    hacking_range,
    kl_occupancy,
    l1_occupancy,
    lower_bound_thm51,
    lower_bound_tight,
    mu_mean_std,
    occupancy,
    occupancy_problem,
    random_case,
    random_policy_family,
    solve_action_kl,
    solve_chi2,
    solve_occupancy_kl,
    solve_sqrt_chi2,
    solve_unregularized,
    two_state_closed_forms,
    two_state_mdp,
    two_state_policy,
)
from klsim.occupancy import regularized as _reg
from klsim.plotting import new_figure, save_figure
from papers_repro._harness import Report, claim_close, claim_leq, claim_true

REGS = ("action_kl", "kl", "chi2", "sqrt_chi2")
LABELS = {"action_kl": "AD-KL", "kl": "OM-KL", "chi2": "OM-χ²", "sqrt_chi2": "OM-√χ²"}


@dataclass
class Args:
    """Arguments of the correlated-proxies reproduction."""

    out: Path = Path("repro_out/correlated_proxies")
    """Output folder (figures, claims.json, data.json, report.md)."""
    n_lambda: int = 30
    """Points of the log-spaced λ grid of each tomato sweep."""
    lambda_range: tuple[float, float] = (1e-6, 3e3)
    """λ grid limits (normalized-return units; wide enough to go from proxy-optimal to base)."""
    bases: tuple[str, ...] = ("canonical", "argmax")
    """Tomato base policies for the best-over-λ table (spec §6.1); the figure uses the first."""
    n_random: int = 1000
    """Random MDPs for the bound claims (spec §8: ≥ 1,000)."""
    random_max_states: int = 12
    """Random MDPs have S ∈ [3, random_max_states)."""
    random_max_actions: int = 5
    """Random MDPs have A ∈ [2, random_max_actions)."""
    fw_iters: int = 3000
    """Frank–Wolfe iterations on tomato (spec claim 9: within 1e-3 of the QP after 3000)."""
    dual_every: int = 1
    """Cross-check the χ² QP with the smooth dual at every k-th sweep point."""
    seed: int = 0
    """Seed offset of the random cases."""

    @classmethod
    def quick(cls) -> Args:
        """Quick preset (< 60 s): canonical base only, 14 λ values, 1,000 tiny random MDPs, 150 FW iterations."""
        return cls(
            n_lambda=14,
            bases=("canonical",),
            n_random=1000,
            random_max_states=5,
            random_max_actions=3,
            fw_iters=150,
            dual_every=1,
        )


@dataclass
class _Sweep:
    lam: np.ndarray
    J_true: dict = field(default_factory=dict)
    J_proxy: dict = field(default_factory=dict)
    div: dict = field(default_factory=dict)
    chi2: dict = field(default_factory=dict)
    lam_axis: dict = field(default_factory=dict)
    lb51: dict = field(default_factory=dict)
    lbt: dict = field(default_factory=dict)
    dual_gap: float = 0.0
    methods: set = field(default_factory=set)


def _bounds(prob, J_true, J_proxy, chi2):
    dP = np.asarray(J_proxy) - prob.J_b_proxy
    lb51 = lower_bound_thm51(dP, chi2, prob.sigma_true, prob.sigma_proxy, prob.r)
    lbt = lower_bound_tight(dP, chi2, prob.sigma_true, prob.sigma_proxy, prob.r)
    return np.asarray(lb51, dtype=float), np.asarray(lbt, dtype=float)


def _sweep(prob, args: Args) -> _Sweep:
    lam = np.geomspace(*args.lambda_range, args.n_lambda)
    sw = _Sweep(lam)
    bar = tqdm(total=4 * lam.size, desc="tomato sweep", disable=not sys.stderr.isatty())
    out = {r: [] for r in REGS}
    Vkl = Vchi = None
    for i, lc in enumerate(lam[::-1]):  # decreasing λ: warm starts for both duals
        res = solve_chi2(prob, lc, method="auto")
        sw.methods.add(res.method)
        if i % args.dual_every == 0:
            dual = solve_chi2(prob, lc, method="dual", warm_start=Vchi)
            Vchi = dual.diagnostics["V"]
            sw.dual_gap = max(sw.dual_gap, float(np.max(np.abs(dual.occupancy - res.occupancy))))
        out["chi2"].append(res)
        out["sqrt_chi2"].append(res)  # the χ² path, mapped to λ_s = 2 λ_c √χ²
        k = solve_occupancy_kl(prob, lc, warm_start=Vkl)
        Vkl = k.diagnostics["V"]
        out["kl"].append(k)
        out["action_kl"].append(solve_action_kl(prob, lc))
        bar.update(4)
    bar.close()
    for r in REGS:
        rs = out[r][::-1]
        sw.J_true[r] = np.array([x.true_return for x in rs])
        sw.J_proxy[r] = np.array([x.proxy_return for x in rs])
        sw.chi2[r] = np.array([x.chi2 for x in rs])
        sw.div[r] = np.array([x.divergence if r != "sqrt_chi2" else np.sqrt(x.chi2) for x in rs])
        sw.lam_axis[r] = np.array([chi2_path_map(x) for x in rs]) if r == "sqrt_chi2" else lam
        sw.lb51[r], sw.lbt[r] = _bounds(prob, sw.J_true[r], sw.J_proxy[r], sw.chi2[r])
    return sw


def _true_optimum(tab) -> float:
    acts, _ = greedy_policy(tab.mdp, tab.true_reward)
    pi = np.eye(tab.mdp.n_actions)[acts]
    return float(np.sum(occupancy(tab.mdp, pi) * tab.true_reward))


def _random_bound_check(args: Args) -> dict:
    """Claims 4–5 over n_random random cases: the bound chain, KL_OM ≤ KL_AD/(1−γ), the L1 bound."""
    viol_chain = viol_kl = viol_l1 = 0
    n_valid = n_pol = 0
    rng = np.random.default_rng(args.seed)
    for i in tqdm(range(args.n_random), desc="random MDPs", disable=not sys.stderr.isatty()):
        c = random_case(args.seed + i, max_states=args.random_max_states, max_actions=args.random_max_actions)
        mu_b = occupancy(c.mdp, c.base_policy)
        sR, sP = mu_mean_std(mu_b, c.mdp.R)[1], mu_mean_std(mu_b, c.proxy_reward)[1]
        pols = random_policy_family(c.mdp, 4, seed=args.seed + i)
        if i % 25 == 0 and sP > 0:  # regularized optima at a random λ
            prob = occupancy_problem(c.mdp, c.base_policy, c.proxy_reward)
            lam = float(prob.sigma_proxy * 10 ** rng.uniform(-2, 1))
            pols.append(solve_chi2(prob, lam, method="dual").policy)
            pols.append(solve_action_kl(prob, lam).policy)
        for pi in pols:
            mu = occupancy(c.mdp, pi)
            n_pol += 1
            ch = chi2_occupancy(mu, mu_b)
            dJ = float(np.sum((mu - mu_b) * c.mdp.R))
            if 0 < c.r < 1:
                out = bound_chain(dJ, float(np.sum((mu - mu_b) * c.proxy_reward)), ch, sR, sP, c.r)
                viol_chain += out["violations"]
                n_valid += out["n_valid"]
            kl, akl = kl_occupancy(mu, mu_b), action_kl(mu, pi, c.base_policy)
            viol_kl += kl > akl / (1 - c.mdp.gamma) + 1e-9
            span = float(c.mdp.R.max() - c.mdp.R.min())
            viol_l1 += abs(dJ) > 0.5 * span * l1_occupancy(mu, mu_b) + 1e-9
    return {
        "chain": viol_chain,
        "n_valid": n_valid,
        "kl": int(viol_kl),
        "l1": int(viol_l1),
        "n_policies": n_pol,
    }


def _best(sw: _Sweep, r: str) -> tuple[float, float]:
    k = int(np.argmax(sw.J_true[r]))
    return float(sw.J_true[r][k]), float(sw.lam_axis[r][k])


def main(args: Args) -> Report:
    """Run the reproduction and return its :class:`Report`."""
    rep = Report(title="Correlated proxies: occupancy-measure χ² regularization (Laidlaw et al., ICLR 2025)")
    tab = tomato_tabular()
    J_true_opt = _true_optimum(tab)
    table = []
    sweeps = {}
    for kind in args.bases:
        pb = tomato_base_policy(tab, kind=kind)
        prob = occupancy_problem(tab.mdp, pb, tab.proxy_reward, tab.true_reward)
        sw = _sweep(prob, args)
        sweeps[kind] = (prob, sw)
        gain = J_true_opt - prob.J_b_true
        row = {
            "base": kind,
            "J_base": prob.J_b_true,
            "J_true_opt": J_true_opt,
            "r": prob.r,
            "sigma_proxy": prob.sigma_proxy,
            "lambda_0": prob.lambda_0,
            "lambda_star": prob.lambda_star,
        }
        for r in REGS:
            J, lb = _best(sw, r)
            row[f"{r}_J"], row[f"{r}_lambda"], row[f"{r}_share"] = J, lb, (J - prob.J_b_true) / gain
        star = solve_sqrt_chi2(prob, prob.lambda_star)
        row["sqrt_chi2_at_lambda_star_J"] = star.true_return
        table.append(row)
        rep.add(
            claim_leq(
                f"chi2_qp_vs_dual_max_abs_dmu[{kind}]",
                sw.dual_gap,
                1e-6,
                detail=f"Clarabel QP vs smooth dual at every {args.dual_every}-th sweep point "
                f"(methods used: {sorted(sw.methods)})",
            )
        )
        others = max(row["action_kl_J"], row["kl_J"])
        rep.add(
            claim_true(
                f"chi2_beats_action_and_occupancy_kl[{kind}]",
                row["chi2_J"] > others and row["sqrt_chi2_J"] > others,
                {
                    "chi2": row["chi2_J"],
                    "sqrt_chi2": row["sqrt_chi2_J"],
                    "action_kl": row["action_kl_J"],
                    "kl": row["kl_J"],
                },
                "OM-χ² and OM-√χ² best-over-λ J_R > AD-KL and OM-KL",
                detail="best-over-λ true return on the exact λ grid (spec claim 11)",
            )
        )
        rep.add(
            claim_true(
                f"chi2_majority_kl_minority[{kind}]",
                row["chi2_share"] > 0.5 and row["action_kl_share"] < 0.5 and row["kl_share"] < 0.5,
                {k: row[f"{k}_share"] for k in REGS},
                "χ² > 0.5; AD-KL, OM-KL < 0.5",
                detail="share of the achievable gain J*_R − J_b(R) recovered at the best λ",
            )
        )

    # ---- canonical base: hacking, equivalence, saturation, λ*
    prob, sw = sweeps[args.bases[0]]
    star = solve_sqrt_chi2(prob, prob.lambda_star)
    hr = hacking_range(tab.mdp, tab.proxy_reward, tab.true_reward, prob.J_b_true)
    none = solve_unregularized(prob)
    on_bucket = np.array([c == CELL_INDEX[BUCKET] for c, _ in tab.states])
    rep.add(
        claim_true(
            "proxy_optimal_policy_hacks",
            prob.r > 0.95 and hr.J_max < prob.J_b_true,
            {"r": prob.r, "J_max_face": hr.J_max, "J_min_face": hr.J_min, "J_base": prob.J_b_true},
            "r > 0.95 and J_max(proxy-optimal face) < J_b(R)",
            detail=f"HiGHS LPs over K; verdict '{hr.verdict}'; the proxy optimum puts "
            f"{hr.mu_max[on_bucket].sum():.4f} = γ^11 of its occupancy on the bucket",
        )
    )
    # √χ² ≡ χ² at λ* (tomato) via SOCP vs the bisection path
    soc = solve_sqrt_chi2(prob, prob.lambda_star, method="socp")
    pth = solve_sqrt_chi2(prob, prob.lambda_star, method="path")
    rep.add(
        claim_leq(
            "sqrt_chi2_socp_equals_chi2_path_at_lambda_star",
            float(np.max(np.abs(soc.occupancy - pth.occupancy))),
            1e-6,
            detail=f"tomato, λ* = {prob.lambda_star:.4g}; χ² at λ_c = {pth.diagnostics['chi2_coef']:.4g}",
        )
    )
    # saturation
    rep.add(
        claim_leq(
            "lambda_0_leq_sigma_proxy",
            prob.lambda_0,
            prob.sigma_proxy,
            1e-12,
            detail="λ_0 = ‖Π_N(√μ_b ⊙ R̃)‖₂ ≤ σ_R̃",
        )
    )
    problem, v, lam = _reg._socp_model(prob)
    worst_chi2, worst_obj = 0.0, 0.0
    for c in (1.001 * prob.lambda_0, 1.001 * prob.sigma_proxy, 2 * prob.sigma_proxy):
        lam.value = c
        _reg._run_cvx(problem, "clarabel")
        worst_chi2 = max(worst_chi2, chi2_occupancy(prob.mu_from_whitened(v.value), prob.mu_b))
        worst_obj = max(worst_obj, abs(problem.value))
    rep.add(
        claim_leq(
            "saturation_chi2_at_lambda_geq_lambda0",
            worst_chi2,
            1e-8,
            detail="SOCP solved (no shortcut) at 1.001λ_0, 1.001σ_R̃, 2σ_R̃: μ* = μ_b",
        )
    )
    rep.add(
        claim_leq(
            "saturation_objective_equals_base",
            worst_obj,
            1e-9,
            detail="|objective − J_b(R̃)| at the same three coefficients",
        )
    )
    big = solve_chi2(prob, 10 * prob.sigma_proxy, method="dual")
    ratio_min = float(np.min(big.occupancy[prob.support] / prob.mu_b[prob.support]))
    rep.add(
        claim_close(
            "path_map_equals_lambda_0_interior",
            chi2_path_map(big) / prob.lambda_0,
            1.0,
            1e-8,
            detail=f"2λ_c√χ²(μ*_c) / λ_0 at λ_c = 10σ_R̃, where no nonnegativity binds "
            f"(min μ/μ_b = {ratio_min:.3f})",
        )
    )
    pu = tomato_base_policy(tab, kind="uniform")
    probu = occupancy_problem(tab.mdp, pu, tab.proxy_reward, tab.true_reward)
    stu = (
        solve_sqrt_chi2(probu, probu.lambda_star, method="socp")
        if probu.lambda_star < probu.lambda_0
        else None
    )
    rep.add(
        claim_true(
            "uniform_base_lambda_star_saturates",
            probu.lambda_star > probu.lambda_0
            and stu is None
            and solve_sqrt_chi2(probu, probu.lambda_star).chi2 <= 1e-20,
            {"lambda_star": probu.lambda_star, "lambda_0": probu.lambda_0},
            "λ* > λ_0 ⇒ μ_b",
            detail="uniform tomato base: the theory says 'do not move'",
        )
    )
    # untuned λ*
    dJ = star.true_return - prob.J_b_true
    chain = bound_chain(
        dJ, star.proxy_return - prob.J_b_proxy, star.chi2, prob.sigma_true, prob.sigma_proxy, prob.r
    )
    lb51_star = float(chain["lb_51"])
    rep.add(
        claim_true(
            "sqrt_chi2_at_lambda_star_improves_and_bounds_hold",
            dJ > 0 and chain["violations"] == 0,
            {"dJ_true": dJ, "LB_5.1": lb51_star, "LB_tight": float(chain["lb_tight"])},
            "ΔJ(R) > 0 and ΔJ ≥ LB_tight ≥ LB_5.1",
            tol=1e-9,
            detail=f"canonical base; the sign of LB_5.1 is {'+' if lb51_star > 0 else '−'} (measured)",
        )
    )
    # FW on tomato at the sweep's best χ² λ
    lam_best = _best(sw, "chi2")[1]
    qp = solve_chi2(prob, lam_best)
    fw = frank_wolfe(prob, lam_best, n_iter=args.fw_iters, step="harmonic")
    fwls = frank_wolfe(prob, lam_best, n_iter=args.fw_iters, step="line_search")
    sub = qp.objective - fw.history["objective"]
    rep.add(
        claim_true(
            "frank_wolfe_gap_certifies",
            bool(np.all(sub >= -1e-9) and np.all(sub <= fw.history["gap"] + 1e-9)),
            {"final_subopt": float(qp.objective - fw.objective), "final_gap": float(fw.history["gap"][-1])},
            "0 ≤ F* − F(μ_k) ≤ gap_k for all k",
            tol=1e-9,
            detail=f"tomato χ² at λ = {lam_best:.3g}, η = 2/(k+2), {args.fw_iters} iterations",
        )
    )
    if args.fw_iters >= 3000:
        rep.add(
            claim_leq(
                "frank_wolfe_within_1e-3_after_3000",
                float(qp.objective - fw.objective),
                1e-3,
                detail="spec claim 9 (η = 2/(k+2))",
            )
        )

    # ---- random MDPs: bounds, KL_OM ≤ KL_AD/(1−γ), L1 bound
    rb = _random_bound_check(args)
    rep.add(
        claim_true(
            "bounds_zero_violations_random_mdps",
            rb["chain"] == 0 and rb["n_valid"] >= args.n_random,
            rb,
            "0 violations of ΔJ ≥ LB_tight ≥ LB_5.1, LB_tight ≥ LB_A",
            tol=1e-9,
            detail=f"{args.n_random} random cases (S < {args.random_max_states}), {rb['n_policies']} "
            f"policies incl. χ² and AD-KL optima",
        )
    )
    rep.add(
        claim_true(
            "occupancy_kl_leq_action_kl_over_1_minus_gamma",
            rb["kl"] == 0 and rb["l1"] == 0,
            rb,
            "0 violations of KL_OM ≤ KL_AD/(1−γ) and |ΔJ| ≤ ½span(R)‖Δμ‖₁",
            tol=1e-9,
        )
    )
    # √χ²/χ² equivalence on random cases
    worst = 0.0
    for i in range(5):
        c = random_case(args.seed + 10_000 + i, max_states=6, max_actions=3)
        p = occupancy_problem(c.mdp, c.base_policy, c.proxy_reward)
        ls = 0.5 * p.lambda_0
        worst = max(
            worst,
            float(
                np.max(
                    np.abs(solve_sqrt_chi2(p, ls).occupancy - solve_sqrt_chi2(p, ls, method="path").occupancy)
                )
            ),
        )
    rep.add(
        claim_leq(
            "sqrt_chi2_equivalence_random", worst, 1e-6, detail="SOCP vs χ² path at λ_s = λ_0/2, 5 cases"
        )
    )
    # damped exact-penalty ORPO reaches the QP occupancy (spec claim 9, second part)
    worst_ep = 0.0
    for i in range(5):
        c = random_case(args.seed + 20_000 + i, max_states=6, max_actions=3)
        p = occupancy_problem(c.mdp, c.base_policy, c.proxy_reward)
        lam_ep = 2 * p.sigma_proxy
        ep = exact_penalty_orpo(p, lam_ep, step_size=0.1, n_iter=500)
        worst_ep = max(worst_ep, float(np.max(np.abs(ep.occupancy - solve_chi2(p, lam_ep).occupancy))))
    rep.add(
        claim_leq(
            "exact_penalty_orpo_reaches_qp",
            worst_ep,
            1e-4,
            detail="π ← π e^{0.1 A}, R' = R̃ − λ∇χ²(μ_k), 500 iterations, λ = 2σ_R̃, 5 random MDPs",
        )
    )

    # ---- two-state counterexample
    ts = _two_state(rep, args)

    # ---- figures
    grid = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]) * prob.sigma_proxy  # the paper's √χ² grid
    socp_pts = np.array([solve_sqrt_chi2(prob, float(c)).true_return for c in grid])
    rep.data["sqrt_chi2_socp_grid"] = {"lambda": grid, "J_true": socp_pts}
    rep.figures.append(_sweep_figure(args, prob, sw, J_true_opt, none.true_return, hr, (grid, socp_pts)))
    rep.figures.append(_two_state_figure(args, ts))
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    k = np.arange(1, fw.history["gap"].size + 1)
    ax.loglog(k, fw.history["gap"], label="FW gap, η=2/(k+2)")
    ax.loglog(k, np.maximum(qp.objective - fw.history["objective"], 1e-16), label="F* − F(μ_k), η=2/(k+2)")
    ax.loglog(np.arange(1, fwls.history["gap"].size + 1), fwls.history["gap"], label="FW gap, line search")
    ax.set_xlabel("iteration k")
    ax.set_title(f"Frank–Wolfe on tomato χ², λ={lam_best:.2g}")
    ax.legend()
    rep.figures.append(save_figure(fig, args.out, "frank_wolfe_gap"))

    rep.data.update(
        {
            "table": table,
            "sweep": {
                r: {
                    "lambda": sw.lam_axis[r],
                    "J_true": sw.J_true[r],
                    "J_proxy": sw.J_proxy[r],
                    "divergence": sw.div[r],
                    "chi2": sw.chi2[r],
                }
                for r in REGS
            },
            "two_state": {k: v for k, v in ts.items() if k != "curves"},
            "frank_wolfe": {
                "gap": fw.history["gap"],
                "objective": fw.history["objective"],
                "qp_objective": qp.objective,
                "gap_line_search": fwls.history["gap"],
            },
        }
    )
    for row in table:
        rep.notes.append(
            f"best-over-λ J_R, base {row['base']}: base {row['J_base']:.4f}, true-opt {row['J_true_opt']:.4f}, "
            + ", ".join(
                f"{LABELS[r]} {row[f'{r}_J']:.4f} (λ={row[f'{r}_lambda']:.2g}, share {row[f'{r}_share']:.2f})"
                for r in REGS
            )
            + f", √χ²@λ* {row['sqrt_chi2_at_lambda_star_J']:.4f}; proxy-opt face J_R ∈ [{hr.J_min:.4f}, {hr.J_max:.4f}]"
        )
    rep.notes.append(
        "klsim's drying rule is the stated one (filtered set), not the paper's delete-while-iterating "
        "loop, so absolute numbers can differ slightly from the original environment."
    )
    return rep


def _two_state(rep: Report, args: Args) -> dict:
    gamma, pb_ = 0.99, 1e-4
    mdp = two_state_mdp(gamma)
    cf = two_state_closed_forms(1e-2, pb_, gamma)
    mu, mu_b = occupancy(mdp, two_state_policy(1e-2)), occupancy(mdp, two_state_policy(pb_))
    measured = {
        "J_b": float(np.sum(mu_b * mdp.R)),
        "J": float(np.sum(mu * mdp.R)),
        "kl_ad": action_kl(mu, two_state_policy(1e-2), two_state_policy(pb_)),
        "l1": l1_occupancy(mu, mu_b),
        "kl_om": kl_occupancy(mu, mu_b),
        "chi2": chi2_occupancy(mu, mu_b),
    }
    err = max(abs(measured[k] - cf[k]) / max(1.0, abs(cf[k])) for k in measured)
    rep.add(
        claim_leq("two_state_closed_forms", err, 1e-10, detail="linear-solve occupancies vs closed forms")
    )
    tabled = {"J_b": 0.9902, "J": 0.5025, "kl_ad": 0.0182, "l1": 0.985, "kl_om": 1.631, "chi2": 24.75}
    terr = max(abs(measured[k] - v) / max(1.0, abs(v)) for k, v in tabled.items())
    rep.add(claim_leq("two_state_table_values", terr, 1e-3, detail=f"γ=0.99, p_b=1e-4, p=1e-2: {measured}"))
    ps = np.geomspace(1e-5, 1, 60)
    curves = {k: np.array([two_state_closed_forms(p, pb_, gamma)[k] for p in ps]) for k in tabled}
    gaps = {}
    for g in (0.9, 0.99, 0.999):
        cs = [two_state_closed_forms(p, pb_, g) for p in ps]
        gaps[g] = (np.array([c["kl_ad"] for c in cs]), np.array([c["J_b"] - c["J"] for c in cs]))
    return {"measured": measured, "curves": {"p": ps, **curves, "gaps": gaps}}


def _sweep_figure(args, prob, sw, J_true_opt, J_proxy_opt_true, hr, socp) -> Path:
    fig, axes = new_figure(2, 4, width=3.6, height=2.8)
    for j, r in enumerate(REGS):
        ax = axes[0, j]
        x = sw.lam_axis[r]
        ok = x > 0
        ax.semilogx(x[ok], sw.J_true[r][ok], "o-", ms=3, label="J(π, R)")
        ax.semilogx(x[ok], sw.J_proxy[r][ok], "s--", ms=2, alpha=0.6, label="J(π, R̃)")
        ax.semilogx(x[ok], prob.J_b_true + sw.lb51[r][ok], ":", label="J_b + LB_5.1")
        ax.semilogx(x[ok], prob.J_b_true + sw.lbt[r][ok], "-.", label="J_b + LB_tight")
        ax.axhline(prob.J_b_true, color="gray", lw=1, label="base")
        ax.axhline(J_true_opt, color="green", lw=1, label="true-opt")
        ax.axhline(hr.J_max, color="red", lw=1, label="proxy-opt (J_R)")
        for val, st, lab in (
            (prob.lambda_star, "--", "λ*"),
            (prob.lambda_0, ":", "λ_0"),
            (prob.sigma_proxy, "-", "σ_R̃"),
        ):
            ax.axvline(val, color="k", ls=st, lw=0.8, label=lab)
        lo = min(hr.J_min, prob.J_b_true) - 0.02
        ax.set_ylim(lo, max(J_true_opt, 0.1) + 0.02)
        if r == "sqrt_chi2":
            ax.semilogx(socp[0], socp[1], "kx", ms=6, label="SOCP at c·σ_R̃")
            ax.legend(fontsize=6)
        ax.set_title(LABELS[r] + (" (χ² path mapped)" if r == "sqrt_chi2" else ""))
        ax.set_xlabel("λ")
        if j == 0:
            ax.legend(fontsize=6)
        ax2 = axes[1, j]
        ax2.loglog(sw.lam_axis[r][ok], np.maximum(sw.div[r][ok], 1e-16), label="own divergence")
        ax2.loglog(sw.lam_axis[r][ok], np.maximum(sw.chi2[r][ok], 1e-16), "--", label="χ²(μ‖μ_b)")
        ax2.set_xlabel("λ")
        ax2.legend(fontsize=6)
    return save_figure(fig, args.out, "tomato_lambda_sweep")


def _two_state_figure(args, ts) -> Path:
    c = ts["curves"]
    fig, axes = new_figure(1, 2)
    ax = axes[0, 0]
    for k in ("J", "kl_ad", "l1", "kl_om", "chi2"):
        ax.loglog(c["p"], np.maximum(c[k], 1e-16), label=k)
    ax.axvline(1e-2, color="k", ls=":", lw=0.8)
    ax.annotate("p = 1e-2", (1.2e-2, 1e-6))
    ax.set_xlabel("p = π(a2|s1)  (p_b = 1e-4, γ = 0.99)")
    ax.legend(loc="lower left", fontsize=6)
    ax = axes[0, 1]
    keep = c["p"] >= 1e-4  # p ≥ p_b: moving toward the absorbing state
    for g, (kl, gap) in c["gaps"].items():
        ax.semilogx(np.maximum(kl[keep], 1e-16), gap[keep], label=f"γ={g}")
    ax.set_xlabel("KL_AD(π‖π_b)")
    ax.set_ylabel("J_b − J")
    ax.set_title("Tiny action KL, large return gap")
    ax.legend()
    return save_figure(fig, args.out, "two_state_counterexample")


if __name__ == "__main__":  # pragma: no cover
    from papers_repro._harness import run_module

    r = run_module("correlated_proxies", Args().out, quick="--quick" in sys.argv)
    print(f"passed={r.passed} ({r.seconds:.1f} s)")

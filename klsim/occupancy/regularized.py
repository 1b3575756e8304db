"""Exact optima of occupancy-regularized objectives max_{μ ∈ K_b} ⟨μ, R̃⟩ − coef · D (spec §3).

One function per objective, each returning an :class:`~klsim.results.OccupancyResult` after the
re-evaluation rule (:func:`klsim.occupancy.problem.finalize`):

* :func:`solve_chi2` — D = χ²(μ‖μ_b), a strongly concave QP (Clarabel / OSQP / smooth dual);
* :func:`solve_sqrt_chi2` — D = √χ², an SOCP (paper Eq. 5; Clarabel) or the χ²-path map;
* :func:`solve_occupancy_kl` — D = KL(μ‖μ_b), through the REPS dual (Peters et al. 2010) or an exp-cone
  cross-check;
* :func:`solve_action_kl` — D = KL_AD(π) (action-distribution KL to π_b), exactly by soft value
  iteration with π_b as the fixed reference;
* :func:`solve_unregularized` — coef = 0: the proxy optimum by exact policy iteration (ties → lowest index).

Solver failure raises :class:`~klsim.occupancy.measures.SolverError`; a policy is never returned from a
non-optimal solve.  Units: coef multiplies a divergence subtracted from the *normalized* return
J = ⟨μ, R⟩ (the paper's deep-RL code uses 2·coef for χ² and coef/(1−γ) for action KL; spec §10).

Reference: Laidlaw, Singhal, Dragan, "Correlated Proxies", ICLR 2025, arXiv:2403.03185, Eq. (5).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp

from klsim._validation import check_choice, check_nonnegative_scalar, check_positive
from klsim.occupancy.measures import SolverError, _occupancy, _solve_policy_system
from klsim.occupancy.problem import OccupancyProblem, finalize
from klsim.results import OccupancyResult

__all__ = [
    "chi2_sweep",
    "solve_chi2",
    "solve_sqrt_chi2",
    "solve_occupancy_kl",
    "solve_action_kl",
    "solve_unregularized",
    "chi2_path_map",
    "greedy_policy",
]

CLARABEL_TOL = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
CLARABEL_RETRY_TOL = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9, "max_iter": 500}
"""Clarabel is retried once with these when it reports 'optimal_inaccurate' at :data:`CLARABEL_TOL`."""
OSQP_TOL = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iter": 200_000}
DUAL_ACCEPT = 1e-8
"""Dual methods are accepted when the flow residual ‖E μ(V) − (1−γ)ρ‖∞ is at most this."""
AUTO_CHAIN = ("clarabel", "osqp", "dual")
"""``method="auto"`` for χ² tries these in order and records the one that succeeded."""


# ---------------------------------------------------------------------------------------- cvxpy models
def _cvx():
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - cvxpy is a dependency
        raise ImportError(
            "klsim.occupancy solvers need cvxpy and clarabel (pip install cvxpy clarabel)"
        ) from exc
    return cp


def _qp_model(prob: OccupancyProblem):
    """Whitened χ² QP with a cvxpy Parameter for coef (canonicalized once, reused along sweeps)."""
    if "qp" not in prob._cache:
        cp = _cvx()
        v = cp.Variable(prob.n_vars)
        lam = cp.Parameter(nonneg=True)
        obj = cp.Maximize(prob.c @ v - lam * cp.sum_squares(v))
        cons = [prob.A_w @ v == 0, v >= -prob.sqrt_mu_b]
        prob._cache["qp"] = (cp.Problem(obj, cons), v, lam)
    return prob._cache["qp"]


def _clarabel_qp(prob: OccupancyProblem, coef: float) -> tuple[np.ndarray, str]:
    """Whitened χ² QP straight through Clarabel's API (no canonicalization; constraint data built once).

    min coef‖v‖² − ⟨c, v⟩ s.t. A_w v + s = 0 (s ∈ {0}), −v + s = √μ_b (s ≥ 0).
    """
    import clarabel

    if "clarabel_qp" not in prob._cache:
        n, m = prob.n_vars, prob.A_w.shape[0]
        A = sp.vstack([prob.A_w, -sp.identity(n)]).tocsc()
        b = np.concatenate([np.zeros(m), prob.sqrt_mu_b])
        cones = [clarabel.ZeroConeT(m), clarabel.NonnegativeConeT(n)]
        prob._cache["clarabel_qp"] = (A, b, cones)
    A, b, cones = prob._cache["clarabel_qp"]
    P = sp.csc_matrix(sp.diags_array(np.full(prob.n_vars, 2.0 * coef)))
    for tol in (CLARABEL_TOL, CLARABEL_RETRY_TOL):
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        for k, val in tol.items():
            setattr(settings, k, val)
        sol = clarabel.DefaultSolver(P, -prob.c, A, b, cones, settings).solve()
        if sol.status == clarabel.SolverStatus.Solved:
            return np.asarray(sol.x), "optimal"
        if sol.status != clarabel.SolverStatus.AlmostSolved:
            break
    raise SolverError(f"clarabel: status {sol.status} (not 'Solved'); no policy returned")


def _socp_model(prob: OccupancyProblem):
    """Whitened √χ² SOCP: max ⟨c, v⟩ − coef·t s.t. ‖v‖ ≤ t (paper Eq. 5)."""
    if "socp" not in prob._cache:
        cp = _cvx()
        v = cp.Variable(prob.n_vars)
        t = cp.Variable()
        lam = cp.Parameter(nonneg=True)
        obj = cp.Maximize(prob.c @ v - lam * t)
        cons = [cp.SOC(t, v), prob.A_w @ v == 0, v >= -prob.sqrt_mu_b]
        prob._cache["socp"] = (cp.Problem(obj, cons), v, lam)
    return prob._cache["socp"]


def _osqp_polish() -> dict:
    """OSQP ≥ 1.0 renamed ``polish`` to ``polishing``."""
    try:
        import osqp
    except ImportError:
        raise SolverError("osqp: not installed (pip install osqp)") from None
    major = int(str(getattr(osqp, "__version__", "0")).split(".")[0] or 0)
    return {"polishing": True} if major >= 1 else {"polish": True}


def _run_cvx(problem, solver: str) -> str:
    cp = _cvx()
    try:
        with (
            warnings.catch_warnings()
        ):  # the status is checked below; cvxpy's inaccuracy warning is redundant
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            _solve_cvx(problem, solver, cp)
    except cp.error.SolverError as exc:
        raise SolverError(f"{solver}: solver failed ({exc})") from None
    if problem.status != cp.OPTIMAL:
        raise SolverError(f"{solver}: status {problem.status!r} (not 'optimal'); no policy returned")
    return problem.status


def _solve_cvx(problem, solver: str, cp) -> None:
    if solver == "clarabel":
        problem.solve(solver=cp.CLARABEL, **CLARABEL_TOL)
        if problem.status == cp.OPTIMAL_INACCURATE:  # one retry at 1e-9 (documented); still 'optimal' only
            problem.solve(solver=cp.CLARABEL, **CLARABEL_RETRY_TOL)
    elif solver == "osqp":
        problem.solve(solver=cp.OSQP, **OSQP_TOL, **_osqp_polish())
    else:  # pragma: no cover - internal
        raise ValueError(f"solver: unknown {solver!r}")


# ------------------------------------------------------------------------------------------------ χ²
def solve_chi2(
    prob: OccupancyProblem, coef: float, *, method: str = "clarabel", warm_start: np.ndarray | None = None
) -> OccupancyResult:
    """Exact maximizer of ⟨μ, R̃⟩ − coef · χ²(μ‖μ_b) over K_b (spec §3(a)).

    Whitened form (v = (μ − μ_b)/√μ_b on supp μ_b): max ⟨√μ_b ⊙ R̃, v⟩ − coef ‖v‖² subject to
    E_b diag(√μ_b) v = 0, v ≥ −√μ_b.  Strongly concave, so the solution is unique and continuous in coef.

    Parameters
    ----------
    prob : OccupancyProblem
    coef : float
        λ > 0 (normalized-return units; the paper's code coefficient is 2λ).
    method : {"clarabel", "osqp", "dual", "auto"}
        Clarabel interior point (tolerances 1e-10), OSQP with polishing (1e-9), or the OptiDICE-type
        smooth dual V* = argmin (1−γ)ρᵀV + (1/4λ) Σ μ_b [δ_V]_+², μ* = μ_b [δ_{V*}]_+/(2λ)
        (Lee et al. 2021, arXiv:2106.10783), minimized by damped semismooth Newton (the dual is piecewise
        quadratic), with L-BFGS-B as fallback; accepted when the flow residual is ≤ 1e-8.
        ``"auto"`` tries :data:`AUTO_CHAIN` in order.
    warm_start : ndarray, shape (S_b,), optional
        Dual variables V for ``method="dual"``.

    Returns
    -------
    OccupancyResult
        ``divergence`` = χ²; ``diagnostics["V"]`` holds the dual solution for ``"dual"``.
    """
    coef = check_positive("coef", coef)
    check_choice("method", method, ("clarabel", "osqp", "dual", "auto"))
    if method == "auto":
        errors = []
        for m in AUTO_CHAIN:
            try:
                return solve_chi2(prob, coef, method=m, warm_start=warm_start)
            except SolverError as exc:
                errors.append(str(exc))
        raise SolverError("chi2 auto: every method failed: " + "; ".join(errors))
    if method == "dual":
        mu, V, info = _chi2_dual(prob, coef, warm_start)
        return finalize(prob, mu, regularizer="chi2", coef=coef, method="dual", diagnostics={"V": V, **info})
    if method == "clarabel":
        vsol, status = _clarabel_qp(prob, coef)
    else:
        problem, v, lam = _qp_model(prob)
        lam.value = coef
        status = _run_cvx(problem, method)
        vsol = v.value
    vp = _polish(prob, vsol, coef=coef)
    return finalize(
        prob,
        prob.mu_from_whitened(vsol if vp is None else vp),
        regularizer="chi2",
        coef=coef,
        method=method,
        status=status,
        diagnostics={"polished": vp is not None},
    )


def chi2_sweep(prob: OccupancyProblem, coefs, *, method: str = "dual") -> list[OccupancyResult]:
    """Solve the χ² problem for many coefficients, reusing work along the path (issue item 7).

    ``"dual"`` (default): coefficients are visited in decreasing order and each smooth-dual Newton solve is
    warm-started at the previous V* (a few Newton steps per point).  ``"clarabel"``: the constraint data
    are built once (Clarabel itself has no warm start).  Results are returned in the input order.
    """
    coefs = np.asarray(coefs, dtype=np.float64).ravel()
    check_choice("method", method, ("dual", "clarabel", "osqp"))
    order = np.argsort(-coefs, kind="stable")
    out: list = [None] * coefs.size
    V = None
    for i in order:
        res = solve_chi2(prob, float(coefs[i]), method=method, warm_start=V)
        if method == "dual":
            V = res.diagnostics["V"]
        out[i] = res
    return out


def _polish(
    prob: OccupancyProblem, v: np.ndarray, *, coef: float | None = None, sqrt_coef: float | None = None
):
    """Active-set polish of an interior-point/ADMM solution (exact KKT solve on the solver's active set).

    With the free set F = {μ > 0} taken from the solver and v_i = −√μ_b,i off F, the χ² stationarity
    2λ v_F = c_F − A_Fᵀy, A_F v_F = b gives v_F = Π c_F/(2λ) + w with Π the projector onto null(A_F) and
    w = A_Fᵀ(A_F A_Fᵀ)⁻¹ b.  For √χ² at coefficient λ_s, λ_c solves 2λ_c‖v‖ = λ_s (‖Πc_F‖ ⊥ w).  The
    polished point is accepted only if it satisfies every KKT condition (feasibility and multiplier
    signs, to 1e-12 relative); otherwise ``None`` (the solver's point is kept).
    """
    sq = prob.sqrt_mu_b
    ratio = (v + sq) / sq  # μ/μ_b at the solver's point
    for thr in (1e-9, 1e-7, 1e-5, 1e-3):  # a valid KKT point is the unique optimum, whichever guess found it
        out = _polish_active_set(prob, v, ratio > thr, coef, sqrt_coef)
        if out is not None:
            return out
    return None


def _polish_active_set(prob, v, free, coef, sqrt_coef):
    sq = prob.sqrt_mu_b
    if not free.any():
        return None
    Aw = prob.A_w.tocsc()
    AF, AX = Aw[:, np.flatnonzero(free)], Aw[:, np.flatnonzero(~free)]
    vX = -sq[~free]
    b = -(AX @ vX)
    rows = np.flatnonzero(np.asarray(abs(AF).sum(axis=1)).ravel() > 0)
    if np.any(np.abs(np.delete(b, rows)) > 1e-14):
        return None
    AF, b = AF[rows], b[rows]
    try:
        lu = sp.linalg.splu(sp.csc_matrix(AF @ AF.T))
    except RuntimeError:
        return None
    cF = prob.c[free]
    y_c = lu.solve(AF @ cF)
    u = cF - AF.T @ y_c  # Π c_F
    y_b = lu.solve(b)
    w = AF.T @ y_b
    if sqrt_coef is not None:
        K = float(w @ w + vX @ vX)
        rem = sqrt_coef**2 - float(u @ u)
        if K <= 0 or rem <= 0:
            return None
        coef = float(np.sqrt(rem / (4 * K)))
    vF = u / (2 * coef) + w
    out = v.copy()
    out[free], out[~free] = vF, vX
    if np.any(vF < -sq[free] - 1e-12) or np.max(np.abs(Aw @ out)) > 1e-11:
        return None
    y = np.zeros(Aw.shape[0])
    y[rows] = y_c - 2 * coef * y_b
    if rows.size < Aw.shape[0]:
        # states without a free pair: their multipliers are the smallest ones keeping z ≥ 0, i.e. the fixed
        # point y_s = max_a [R̃ + 2λ + γ (P y)(s, a)] with the other states' y held (a γ-contraction)
        y = _unvisited_multipliers(prob, y, rows, 2 * coef)
        if y is None:
            return None
    z = Aw[:, np.flatnonzero(~free)].T @ y + 2 * coef * vX - prob.c[~free]
    if np.any(z < -1e-10 * max(1.0, float(np.max(np.abs(prob.c))))):
        return None
    return out


def _delta(prob: OccupancyProblem, V: np.ndarray) -> np.ndarray:
    """δ_V(s, a) = R̃ + γ P V − V(s) on the support pairs = R̃ − E_bᵀ V."""
    return prob.proxy_reward.ravel()[prob.pairs] - prob.E_b.T @ V


def _base_dual_start(prob: OccupancyProblem, shift: float) -> np.ndarray:
    """V^{π_b} for the reward R̃ − shift, restricted to reachable states (a dual starting point)."""
    mdp = prob.mdp
    v = _solve_policy_system(
        mdp, prob.base_policy, np.sum(prob.base_policy * (prob.proxy_reward - shift), 1), transpose=False
    )
    return v[prob.states]


def _chi2_dual(prob: OccupancyProblem, coef: float, V0: np.ndarray | None):
    mub = prob.mu_b.ravel()[prob.pairs]
    E, rho = prob.E_b, prob.rho_b

    def fg(V):
        dp = np.maximum(_delta(prob, V), 0.0)
        mu = mub * dp / (2 * coef)
        return rho @ V + np.sum(mub * dp * dp) / (4 * coef), rho - E @ mu, dp

    full_diag = (E @ sp.diags_array(mub / (2 * coef)) @ E.T).diagonal()

    def hess_solve(V, dp, g, nu):  # generalized Hessian of the piecewise-quadratic dual
        H = sp.csc_matrix(E @ sp.diags_array(mub * (dp > 0) / (2 * coef)) @ E.T)
        # Marquardt damping, scaled per state by the Hessian with every pair active (keeps H > 0)
        H = H + sp.diags_array((nu + 1e-10) * full_diag).tocsc()
        try:
            return sp.linalg.splu(H).solve(-g)
        except RuntimeError:
            return None

    if V0 is None:
        c0 = 10.0 * max(prob.sigma_proxy, 1e-12)
        if c0 > 10.0 * coef:  # continuation from a large coefficient (warm starts along decreasing λ)
            V0 = _base_dual_start(prob, 2 * c0)
            while c0 > 10.0 * coef:
                V0 = _chi2_dual(prob, c0, V0)[1]
                c0 /= 10.0
        else:
            V0 = _base_dual_start(prob, 2 * coef)
    V = np.asarray(V0, dtype=np.float64).copy()
    V, f, g, _, n = _damped_newton(fg, hess_solve, V, max_steps=300, gtol=1e-15)
    lbfgs_iter = 0
    if not np.max(np.abs(g)) <= DUAL_ACCEPT:  # fallback: L-BFGS-B (spec §3(a)), then Newton again
        res = so.minimize(
            lambda x: fg(x)[:2],
            V,
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 3000, "maxcor": 30},
        )
        lbfgs_iter = int(res.nit)
        V, f, g, _, n2 = _damped_newton(fg, hess_solve, res.x, max_steps=300, gtol=1e-15)
        n += n2
    resid = float(np.max(np.abs(g)))
    if not resid <= DUAL_ACCEPT:
        raise SolverError(f"chi2 dual: flow residual {resid:.3g} > {DUAL_ACCEPT:g} after Newton + L-BFGS-B")
    mu = prob.to_full(mub * np.maximum(_delta(prob, V), 0.0) / (2 * coef))
    return (
        mu,
        V,
        {
            "dual_value": float(f + coef),
            "dual_flow_residual": resid,
            "newton_steps": n,
            "lbfgs_iter": lbfgs_iter,
        },
    )


# ------------------------------------------------------------------------------------------------ √χ²
def chi2_path_map(result: OccupancyResult) -> float:
    """The √χ² coefficient at which a χ² solution (coef λ_c) is also optimal: λ_s = 2 λ_c √χ²(μ*) (spec §3(b))."""
    return 2.0 * float(result.params["coef"]) * float(np.sqrt(result.chi2))


def _unvisited_multipliers(prob: OccupancyProblem, y: np.ndarray, rows: np.ndarray, shift: float):
    S_b = y.size
    U = np.setdiff1d(np.arange(S_b), rows)
    row_of_state = np.full(prob.mdp.n_states, -1)
    row_of_state[prob.states] = np.arange(S_b)
    pair_row = row_of_state[prob.pairs // prob.mdp.n_actions]
    inU = np.isin(pair_row, U)
    idx = np.flatnonzero(inU)
    ET = sp.csr_array(prob.E_b.T)[idx]
    Rs = prob.proxy_reward.ravel()[prob.pairs][idx] + shift
    owner = pair_row[idx]
    for _ in range(100_000):
        val = Rs + y[owner] - ET @ y  # R̃ + 2λ + γ P y
        new = np.full(S_b, -np.inf)
        np.maximum.at(new, owner, val)
        diff = float(np.max(np.abs(new[U] - y[U])))
        y[U] = new[U]
        if diff <= 1e-15 * max(1.0, float(np.max(np.abs(y)))):
            return y
    return None


def solve_sqrt_chi2(
    prob: OccupancyProblem, coef: float, *, method: str = "socp", rtol: float = 1e-10
) -> OccupancyResult:
    """Exact maximizer of ⟨μ, R̃⟩ − coef · √χ²(μ‖μ_b) over K_b (paper Eq. 5; spec §3(b)).

    For coef ≥ λ_0 (:attr:`OccupancyProblem.lambda_0`) μ_b is optimal and is returned directly.  Below,

    * ``"socp"``: Clarabel on max ⟨c, v⟩ − coef·t, ‖v‖₂ ≤ t (whitened);
    * ``"path"``: the χ² solution at λ_c with 2 λ_c √χ²(μ*_c) = coef, found by bisection on log λ_c
      (the map is non-decreasing).  At coef = λ_0 exactly the √χ² solutions form a segment; the path
      returns its χ²-limit end.

    The paper's theory coefficient is λ* = σ_R̃ √(1 − r²) (``prob.lambda_star``).
    """
    coef = check_nonnegative_scalar("coef", coef)
    check_choice("method", method, ("socp", "path"))
    if coef >= prob.lambda_0:
        return finalize(
            prob,
            prob.mu_b,
            regularizer="sqrt_chi2",
            coef=coef,
            method=method,
            status="saturated",
            diagnostics={"saturated": True},
        )
    if method == "socp":
        problem, v, lam = _socp_model(prob)
        lam.value = coef
        status = _run_cvx(problem, "clarabel")
        vp = _polish(prob, v.value, sqrt_coef=coef)
        return finalize(
            prob,
            prob.mu_from_whitened(v.value if vp is None else vp),
            regularizer="sqrt_chi2",
            coef=coef,
            method="socp",
            status=status,
        )
    if coef == 0:
        return solve_unregularized(prob, restrict_to_support=True)
    # bisection on log λ_c: g(λ_c) = 2 λ_c √χ²(μ*_c) is non-decreasing with limit λ_0
    lo, hi = np.log(coef / 2) - 1.0, np.log(coef / 2) + 1.0
    while chi2_path_map(solve_chi2(prob, float(np.exp(lo)))) > coef:
        lo -= 2.0
    while chi2_path_map(solve_chi2(prob, float(np.exp(hi)))) < coef:
        hi += 2.0
        if hi > 60:
            raise SolverError(
                "sqrt_chi2 path: could not bracket the coefficient (coef too close to lambda_0?)"
            )
    best = None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        res = solve_chi2(prob, float(np.exp(mid)))
        g = chi2_path_map(res)
        best = res
        if abs(g - coef) <= rtol * coef or hi - lo < 1e-13:
            break
        if g < coef:
            lo = mid
        else:
            hi = mid
    assert best is not None
    return finalize(
        prob,
        best.occupancy,
        regularizer="sqrt_chi2",
        coef=coef,
        method="path",
        status="optimal",
        diagnostics={"chi2_coef": float(best.params["coef"])},
    )


# ------------------------------------------------------------------------------------------- KL (REPS)
def solve_occupancy_kl(
    prob: OccupancyProblem, coef: float, *, method: str = "dual", warm_start: np.ndarray | None = None
) -> OccupancyResult:
    """Exact maximizer of ⟨μ, R̃⟩ − coef · KL(μ‖μ_b) over K_b (spec §3(c); REPS, Peters et al. 2010).

    ``"dual"``: V* = argmin coef · log Σ_supp μ_b e^{δ_V/coef} + (1−γ) ρᵀV with δ_V = R̃ + γPV − V(s);
    μ* = softmax(log μ_b + δ_{V*}/coef).  The dual is shift-invariant, so V at the first reachable state is
    pinned to 0; it is minimized by damped Newton (stable log-sum-exp) and accepted when the flow residual
    is ≤ 1e-8.  ``diagnostics["duality_gap"]`` = dual value − primal objective (≥ 0, the certificate).

    ``"expcone"``: cvxpy ``rel_entr`` + Clarabel, a cross-check for small instances only.
    """
    coef = check_positive("coef", coef)
    check_choice("method", method, ("dual", "expcone"))
    if method == "expcone":
        cp = _cvx()
        mub = prob.mu_b.ravel()[prob.pairs]
        m = cp.Variable(prob.n_vars, nonneg=True)
        Rs = prob.proxy_reward.ravel()[prob.pairs]
        problem = cp.Problem(
            cp.Maximize(Rs @ m - coef * cp.sum(cp.rel_entr(m, mub))), [prob.E_b @ m == prob.rho_b]
        )
        status = _run_cvx(problem, "clarabel")
        return finalize(
            prob,
            prob.to_full(np.maximum(m.value, 0.0)),
            regularizer="kl",
            coef=coef,
            method="expcone",
            status=status,
        )
    mu, V, info = _kl_dual(prob, coef, warm_start)
    res = finalize(prob, mu, regularizer="kl", coef=coef, method="dual", diagnostics={"V": V, **info})
    gap = info["dual_value"] - res.objective
    res.diagnostics["duality_gap"] = float(gap)
    if gap < -1e-8 * max(1.0, abs(res.objective)):
        raise SolverError(f"occupancy KL dual: negative duality gap {gap:.3g} (certificate fails)")
    return res


def _kl_dual(prob: OccupancyProblem, coef: float, V0: np.ndarray | None):
    if V0 is None:  # continuation from a large coefficient, warm-started at the base values
        V0 = _base_dual_start(prob, 0.0)
        c0 = 10.0 * max(prob.sigma_proxy, 1e-12)
        while c0 > 4.0 * coef:
            V0 = _kl_newton(prob, c0, V0)[1]
            c0 /= 4.0
    return _kl_newton(prob, coef, np.asarray(V0, dtype=np.float64))


def _damped_newton(fg, hess_solve, V: np.ndarray, max_steps: int = 500, gtol: float = 1e-14):
    """Levenberg-damped Newton with backtracking: ``fg(V) -> (f, g, aux)``, ``hess_solve(V, aux, g, nu) -> step``.

    The step solves (H + nu·scale·I) step = −g; nu shrinks after full steps and grows when no backtracking
    step gives Armijo decrease.  Returns (V, f, g, aux, steps).
    """
    nu = 0.0
    f, g, aux = fg(V)
    n = 0
    for n in range(1, max_steps + 1):
        if np.max(np.abs(g)) <= gtol:
            break
        accepted = False
        for _ in range(40):
            step = hess_solve(V, aux, g, nu)
            if step is not None and np.all(np.isfinite(step)) and g @ step < 0:
                t = 1.0
                for _ in range(12):
                    f2, g2, aux2 = fg(V + t * step)
                    if np.isfinite(f2) and f2 <= f + 1e-4 * t * (g @ step):
                        accepted = True
                        break
                    t *= 0.5
                if accepted:
                    stalled = f - f2 <= 1e-15 * max(1.0, abs(f)) and np.max(np.abs(g2)) <= 1e-10
                    V, f, g, aux = V + t * step, f2, g2, aux2
                    if stalled:
                        return V, f, g, aux, n
                    if t == 1.0:
                        nu = nu / 10.0 if nu > 1e-10 else 0.0
                    break
            nu = max(10.0 * nu, 1e-8)
            if nu > 1e12:
                break
        if not accepted:
            break
    return V, f, g, aux, n


def _kl_newton(prob: OccupancyProblem, coef: float, V0: np.ndarray):
    """Damped Newton on the pinned REPS dual (V[0] = 0); the Hessian E(diag μ − μμᵀ)Eᵀ/coef is a sparse
    matrix minus a rank-one term, solved by sparse LU and Sherman–Morrison."""
    logmub = np.log(prob.mu_b.ravel()[prob.pairs])
    E, rho = prob.E_b, prob.rho_b
    S_b = rho.size
    Rs = prob.proxy_reward.ravel()[prob.pairs]
    Er = sp.csr_array(E[1:])

    def fg(V):
        z = logmub + (Rs - E.T @ V) / coef
        m = z.max()
        w = np.exp(z - m)
        Z = w.sum()
        mu = w / Z
        return coef * (m + np.log(Z)) + rho @ V, rho - E @ mu, mu

    def hess_solve(V, mu, g, nu):
        B = sp.csc_matrix(Er @ sp.diags_array(mu / coef) @ Er.T)
        d = B.diagonal()
        scale = max(float(d.mean()), 1e-300)
        B = B + sp.diags_array(np.full(S_b - 1, (nu + 1e-12) * scale)).tocsc()
        u = (Er @ mu) / np.sqrt(coef)
        try:
            lu = sp.linalg.splu(B)
        except RuntimeError:
            return None
        x1, x2 = lu.solve(-g[1:]), lu.solve(u)
        den = 1.0 - u @ x2
        if den <= 1e-14:
            return None
        return np.concatenate(([0.0], x1 + x2 * (u @ x1) / den))

    V, f, g, mu, n = _damped_newton(fg, hess_solve, V0.copy() - V0[0])
    resid = float(np.max(np.abs(g)))
    if not resid <= DUAL_ACCEPT:
        raise SolverError(
            f"occupancy KL dual: flow residual {resid:.3g} > {DUAL_ACCEPT:g} after {n} Newton steps"
        )
    return prob.to_full(mu), V, {"dual_value": float(f), "dual_flow_residual": resid, "newton_steps": n}


# ------------------------------------------------------------------------------------------ action KL
def solve_action_kl(
    prob: OccupancyProblem, coef: float, *, method: str = "soft_pi", tol: float = 1e-12
) -> OccupancyResult:
    """Exact maximizer of J(π, R̃) − coef · KL_AD(π), the action-distribution KL to π_b (spec §3(d)).

    The optimum is the fixed point Q = R̃ + γPV, V(s) = coef · log Σ_{a: π_b>0} π_b(a|s) e^{Q(s,a)/coef},
    π ∝ π_b e^{Q/coef}; the optimal value is (1−γ) ρᵀV (``diagnostics["soft_value"]``).  Not convex in μ,
    but solved exactly:

    * ``"soft_pi"`` (default): soft policy iteration from π_b — exact evaluation of
      J − coef·KL_AD by one sparse LU per step, then π ← π_b e^{Q/coef}/Z; stops when V changes by ≤ ``tol``
      (relative) and certifies ‖T V − V‖∞ ≤ 1e-9 · max(1, ‖V‖∞) (T = the soft Bellman operator);
    * ``"soft_vi"``: :func:`klsim.dp.soft_value_iteration` with log_ref = log π_b (stops at ‖ΔV‖ ≤ tol).

    KL_AD carries no 1/(1−γ) factor (the paper's deep-RL code uses coef/(1−γ); spec §10).
    """
    coef = check_positive("coef", coef)
    check_choice("method", method, ("soft_pi", "soft_vi"))
    mdp = prob.mdp
    with np.errstate(divide="ignore"):
        log_ref = np.log(prob.base_policy)
    Rp = prob.proxy_reward
    if method == "soft_vi":
        from klsim.dp import soft_value_iteration

        sol = soft_value_iteration(mdp.with_reward(Rp), kl_coef=coef, log_ref=log_ref, tol=tol)
        if not sol.converged:
            raise SolverError(
                f"action KL: soft value iteration did not converge (residual {sol.residual:.3g})"
            )
        log_pi, V = sol.log_policy, sol.v
    else:
        log_pi, V = _soft_policy_iteration(mdp, Rp, log_ref, coef, tol)
    pi = np.exp(log_pi)
    pi = pi / pi.sum(axis=1, keepdims=True)
    value = float((1 - mdp.gamma) * mdp.initial @ V)
    return finalize(
        prob,
        _occupancy(mdp, pi),
        regularizer="action_kl",
        coef=coef,
        method=method,
        policy=pi,
        diagnostics={"soft_value": value},
    )


def _soft_backup(mdp, Rp, log_ref, coef, V):
    from klsim.divergences import log_softmax, logsumexp

    Q = Rp + mdp.gamma * mdp.expected_next(V)
    z = log_ref + Q / coef
    return coef * logsumexp(z, axis=1), log_softmax(z, axis=1)


def _soft_policy_iteration(mdp, Rp, log_ref, coef, tol):
    """Soft policy iteration, then soft value-iteration polishing from its value (a γ-contraction)."""
    pi = np.exp(log_ref)
    V, best, stall = None, np.inf, 0
    for _ in range(200):
        with np.errstate(invalid="ignore"):
            kl = np.where(pi > 0, pi * (np.log(np.where(pi > 0, pi, 1.0)) - log_ref), 0.0).sum(axis=1)
        r_pi = np.sum(pi * Rp, axis=1) - coef * kl
        V_new = _solve_policy_system(mdp, pi, r_pi, transpose=False)
        dv = np.inf if V is None else float(np.max(np.abs(V_new - V)))
        V = V_new
        TV, log_pi = _soft_backup(mdp, Rp, log_ref, coef, V)
        pi = np.exp(log_pi)
        if dv <= tol * max(1.0, float(np.max(np.abs(V)))):
            break
        stall = stall + 1 if dv >= best else 0
        best = min(best, dv)
        if stall >= 3:  # rounding floor of the linear solves reached
            break
    scale = max(1.0, float(np.max(np.abs(TV))))
    for _ in range(20_000):  # polish: V ← T V until the residual reaches the tolerance or stops shrinking
        resid = float(np.max(np.abs(TV - V)))
        if resid <= tol * scale:
            break
        V = TV
        TV, log_pi = _soft_backup(mdp, Rp, log_ref, coef, V)
        if float(np.max(np.abs(TV - V))) >= resid and resid <= 1e-9 * scale:
            break
    resid = float(np.max(np.abs(TV - V)))
    if not resid <= 1e-9 * scale:
        raise SolverError(f"action KL: soft policy iteration stalled (soft Bellman residual {resid:.3g})")
    return log_pi, TV


# ----------------------------------------------------------------------------------------------- none
def greedy_policy(
    mdp, reward: np.ndarray, mask: np.ndarray | None = None, init: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact optimal deterministic policy by policy iteration (ties → lowest action index).

    Parameters
    ----------
    mdp : TabularMDP
    reward : ndarray, shape (S, A)
    mask : ndarray of bool, shape (S, A), optional
        Allowed actions (e.g. π_b > 0); every row needs at least one.
    init : ndarray of int, shape (S,), optional
        Starting actions (warm start, e.g. the previous oracle answer).

    Returns
    -------
    actions : ndarray of int64, shape (S,)
    v : ndarray, shape (S,)
        Unnormalized optimal values.
    """
    S, A = mdp.n_states, mdp.n_actions
    allowed = np.ones((S, A), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if not allowed.any(axis=1).all():
        raise ValueError(f"mask: state {int(np.flatnonzero(~allowed.any(axis=1))[0])} has no allowed action")
    acts = np.argmax(allowed, axis=1) if init is None else np.asarray(init, dtype=np.int64).copy()
    scale = max(1.0, float(np.max(np.abs(reward)))) / (1 - mdp.gamma)
    for _ in range(10 * S + 100):
        pi = np.zeros((S, A))
        pi[np.arange(S), acts] = 1.0
        v = _solve_policy_system(mdp, pi, reward[np.arange(S), acts], transpose=False)
        q = np.where(allowed, reward + mdp.gamma * mdp.expected_next(v), -np.inf)
        qmax = q.max(axis=1)
        cur = q[np.arange(S), acts]
        improve = cur < qmax - 1e-12 * scale
        if not improve.any():
            tied = q >= qmax[:, None] - 1e-12 * scale
            return np.argmax(tied, axis=1).astype(np.int64), v
        acts = np.where(improve, np.argmax(q >= qmax[:, None] - 1e-12 * scale, axis=1), acts)
    raise SolverError("greedy_policy: policy iteration did not terminate")  # pragma: no cover


def solve_unregularized(prob: OccupancyProblem, *, restrict_to_support: bool = False) -> OccupancyResult:
    """A proxy-optimal policy (coef = 0), exact policy iteration with ties to the lowest index (spec §3(e)).

    ``restrict_to_support`` limits actions to π_b > 0 (the optimum over K_b rather than K).  Proxy optima
    can be non-unique; :func:`klsim.occupancy.proxies.hacking_range` gives the range of true returns on the
    optimal face.
    """
    mdp = prob.mdp
    mask = (prob.base_policy > 0) if restrict_to_support else None
    acts, _ = greedy_policy(mdp, prob.proxy_reward, mask)
    pi = np.zeros((mdp.n_states, mdp.n_actions))
    pi[np.arange(mdp.n_states), acts] = 1.0
    return finalize(
        prob, _occupancy(mdp, pi), regularizer="none", coef=0.0, method="policy_iteration", policy=pi
    )

"""Target balancing: weight each arm towards a target sample, by unrolled balancing attention.

The SVM dual of `cina.core.balancing` (Tarr & Imai) gives both arms equal mass and balances them
*against each other*. Its weights therefore describe the largest balanced subset, not the whole
sample: when one arm is small all its units hit the box and the "ATE" becomes the effect on that
arm (IHDP: 139 treated of 747, the SVM "ATE" is the ATT; MAE 0.62 vs 0.30 for the difference in
means on 30 replications). The ATE needs each arm to look like the *whole* sample, the ATT needs
the controls to look like the treated. Target balancing solves exactly that, per free arm A with
target set G (ATE: A = treated and A = controls, G = all units; ATT: A = controls, G = treated,
treated weights uniform)::

    minimise over a in [0, 1]^|A|   f(a) = -2 s + || s mu_G - sum_{k in A} a_k phi(x_k) ||^2 / (2 lam)

with s = sum_k a_k the arm's mass, phi the feature map of the attention kernel
``K_ij = exp(s_ij) / (h_i h_j)`` (`cina.core.balancing`) and mu_G the target's mean embedding. It is
the ATT form of the SVM dual of `cina.core.balancing` (target arm as one unit) without the cap on the
target's mass: lam trades the arm's mass (effective sample size) against the kernel MMD between
the weighted arm and the target. Weights are a / s.

Every quantity is a kernel product, i.e. a tied-key self-attention over the units with values
``a / h``: ``(K a)_j`` is the attention output of unit j. The solver is accelerated projected
gradient (FISTA, Beck & Teboulle 2009) unrolled for a fixed number of steps, so each step is one
balancing-attention layer with shared keys and the whole solve is differentiable: `cina.CInA`
puts these layers after its transformer (the network predicts the starting weights) and trains
through them. Measured on 40 default-preset test tasks (uniform start, lam = 1e-3 / N): 30 steps
reach the converged ATE error (MAE/sd(y) 0.127 at 30, 0.128 at 1000 steps); the constrained
(equal-mass, box-capped target) version needed ~300 steps for the same.

Memory: the kernel is materialised once, (B, N, N), when ``B * N^2 <= max_elements``, else every
product is computed in row blocks by `cina.core.balancing.kernel_matvec` (O(N) memory, N^2 time per
step). All shapes: keys (B, N, D), t / mask / alpha (B, N), att (B,) bool.
"""

from __future__ import annotations

import torch

from .kernel import DEFAULT_BLOCK_ELEMENTS, _row_blocks, auto_block_size, dense_kernel, kernel_matvec, log_normalizer

__all__ = ["KERNEL_FORMS", "KernelOperator", "free_and_target", "gaussian_keys", "solve_target_balance", "target_objective"]

#: "gaussian": ``K_ij = exp(-|k_i - k_j|^2 / 2) / (n n)``; "attention": ``exp(s_ij) / (h_i h_j)``
KERNEL_FORMS = ("attention", "gaussian")


def gaussian_keys(x: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """Keys of the Gaussian balancing kernel on standardised covariates.

    Args:
        x: (B, N, D) standardised covariates (`cina.core.balancing.standardize_covariates`), zero on
            padded units and features; feature_mask: (B, D).

    Returns:
        (B, N, D) ``x / sqrt(d)``, so ``exp(-|k_i - k_j|^2 / 2) = exp(-|x_i - x_j|^2 / (2 d))``:
        a bandwidth of one standard deviation per covariate (sklearn's ``gamma="scale"``
        convention up to the factor 2), the same for every d. d counts the valid non-constant
        columns; padded and constant columns add nothing.
    """
    # d counts the informative columns: standardize_covariates zeroes constant ones
    informative = feature_mask & (x != 0).any(dim=1)
    d = informative.sum(-1).clamp_min(1).to(x.dtype).view(-1, 1, 1)
    return x * d.rsqrt()


def _gauss_from_cross(cross: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor) -> torch.Tensor:
    """``exp(-|a_i - b_j|^2 / 2)`` from the inner products ``cross`` (B, n_a, n_b) and the squared
    norms sq_a (B, n_a), sq_b (B, n_b).

    Without a gradient to track, it works in place in ``cross`` (which it then returns): on a
    (B, N, r) float64 block that saves five temporaries of the same size, whose allocation and
    memory traffic cost more than the arithmetic (a third of a 1,000-unit Nystrom set-up).
    """
    if torch.is_grad_enabled() and cross.requires_grad:
        return torch.exp(-(sq_a.unsqueeze(-1) + sq_b.unsqueeze(-2) - 2.0 * cross).clamp_min(0.0) / 2.0)
    return cross.mul_(-2.0).add_(sq_a.unsqueeze(-1)).add_(sq_b.unsqueeze(-2)).clamp_min_(0.0).mul_(-0.5).exp_()


class KernelOperator:
    """``u -> K u`` for the balancing kernel of tied ``keys``.

    Two kernel forms (``form``), both attention with tied keys and different normalisers:

    * ``"gaussian"``: ``K_ij = exp(-|k_i - k_j|^2 / 2) / (n n)``, n the dataset's real units:
      attention scores ``k_i . k_j - |k_i|^2 / 2 - |k_j|^2 / 2`` with a constant normaliser.
      The usual kernel-balancing kernel (Hazlett 2020; Kallus 2020): every unit's feature
      vector has the same norm.
    * ``"attention"``: ``K_ij = exp(s_ij) / (h_i h_j)`` with ``s_ij = k_i . k_j / sqrt(D)`` and
      the softmax normalisers h (`cina.core.balancing`), the paper's kernel. Its features are the
      Gaussian ones divided by a kernel-density estimate, so units in sparse regions dominate
      the balance.

    Three regimes, by size: a Nystrom (landmark) factorisation when ``landmarks`` is set and
    every dataset has more than 2 x ``landmarks`` units; else the dense (B, N, N) kernel when it
    holds at most ``max_elements`` entries; else exact row blocks (`kernel_matvec`, N^2 time per
    product, O(N) memory).

    Nystrom: ``exp(s_ij) = G_ij g_i g_j`` with the Gaussian kernel
    ``G_ij = exp(-|k_i - k_j|^2 / (2 sqrt(D)))`` and ``g_i = exp(|k_i|^2 / (2 sqrt(D)))``, so
    ``h = g * (G g)`` and ``K = diag(1 / G g) G diag(1 / G g)``. G (entries in (0, 1]) is
    factorised on r landmark units, ``G ~ F F^T`` with ``F = G_NL C^-T`` and ``C C^T`` the Cholesky
    factorisation of G_LL plus a small jitter (N x r, in the keys' precision with C in float64,
    stored with the normalisers folded in), and every product costs O(N r) instead of O(N^2): a
    16,000-unit dataset takes a fraction of a second instead of half a minute. The landmarks are
    the r / 4 units of largest key norm (they dominate ``G g``, which is then exact over them and
    computed in log space) plus a fixed random subset of the other real units. The Gaussian form
    needs no normaliser: ``K = (F / n) (F / n)^T``.

    Args:
        keys: (B, N, D) keys; mask: (B, N) bool.
        max_elements: largest (B, N, N) kernel materialised.
        landmarks: r for the Nystrom regime (None: never; exact row blocks instead).

    The regime and the landmark draw are per batch (they depend on B and the padded N), so a
    dataset's weights can differ slightly with the company it is batched with (and so can the
    step size, see `_lipschitz`).
    """

    def __init__(self, keys: torch.Tensor, mask: torch.Tensor, max_elements: int = DEFAULT_BLOCK_ELEMENTS,
                 landmarks: int | None = None, form: str = "attention"):
        if form not in KERNEL_FORMS:
            raise ValueError(f"kernel form must be one of {KERNEL_FORMS}, got {form!r}")
        B, N, _ = keys.shape
        self.mask = mask
        self.keys = keys
        self.form = form
        self.dense = None
        self.factor = None
        self.block_size = auto_block_size(B, N, max_elements)
        # 1 / n per dataset (Gaussian form)
        self.inv_n = 1.0 / mask.sum(-1).clamp_min(1).to(keys.dtype)
        if landmarks is not None and int(mask.sum(-1).min()) > 2 * landmarks:
            self._nystrom(keys, mask, int(landmarks))
            return
        if B * N * N <= max_elements:
            if form == "gaussian":
                sq = keys.square().sum(-1)
                g = self._gauss(keys, sq, keys, sq) * (self.inv_n.view(-1, 1, 1) ** 2)
                self.dense = g.masked_fill(~(mask.unsqueeze(1) & mask.unsqueeze(2)), 0.0)
            else:
                self.dense = dense_kernel(keys, mask)
        elif form == "attention":
            self.log_h = log_normalizer(keys, mask, self.block_size)

    @staticmethod
    def _gauss(a, sa, b, sb):
        """exp(-|a_i - b_j|^2 / 2) from the points and their squared norms: (B, n_a, n_b)."""
        return _gauss_from_cross(a @ b.transpose(-1, -2), sa, sb)

    def _gaussian_blocks(self, u: torch.Tensor) -> torch.Tensor:
        """Exact Gaussian-form product in row blocks (O(N) memory): u (B, N, C)."""
        keys, mask = self.keys, self.mask
        sq = keys.square().sum(-1)
        q = torch.cat([keys, sq.unsqueeze(-1)], -1)
        u = torch.where(mask.unsqueeze(-1), u, torch.zeros_like(u))

        def rows(qb, kk, sk, uu):
            return self._gauss(qb[..., :-1], qb[..., -1], kk, sk) @ uu

        out = _row_blocks(rows, keys.shape[1], self.block_size, q, keys, sq, u) * (self.inv_n.view(-1, 1, 1) ** 2)
        return out.masked_fill(~mask.unsqueeze(-1), 0.0)

    def _nystrom(self, keys: torch.Tensor, mask: torch.Tensor, r: int) -> None:
        B, N, D = keys.shape
        # The (B, N, r) blocks are built in the keys' precision (float32 for a model: half the
        # memory traffic of float64, which bounds this set-up); the r x r Cholesky factor is
        # always computed in float64.
        work = torch.promote_types(keys.dtype, torch.float32)
        # the attention form's Gaussian part has bandwidth D^(1/4) (scores s_ij = k_i . k_j / sqrt(D))
        k = (keys.to(work) * (D ** -0.25 if self.form == "attention" else 1.0)).masked_fill(~mask.unsqueeze(-1), 0.0)
        sq = k.square().sum(-1)  # |k_i|^2 (over sqrt(D) in the attention form)
        gen = torch.Generator().manual_seed(0)
        # r landmarks among each dataset's real units: the r smallest random keys ...
        priority = torch.rand(B, N, generator=gen, dtype=torch.float64).to(keys.device)
        if self.form == "attention":
            # ... after the r / 4 units of largest |k|: their g_j = exp(|k_j|^2 / 2) dominates
            # the normaliser G g, and a landmark's kernel column is reproduced exactly. With
            # random landmarks only, the error of G_ij for a far outlier j times its huge g_j
            # made (G g)_i negative for some units (NaN weights on 5,000-unit tasks).
            top = sq.masked_fill(~mask, -1.0).topk(max(1, r // 4), dim=-1).indices
            priority = priority.scatter(1, top, -1.0)
        order = priority.masked_fill(~mask, 2.0).argsort(-1)[:, :r]
        kl = k.gather(1, order.unsqueeze(-1).expand(B, r, D))
        sql = sq.gather(1, order)

        # G_LL = C C^T (C lower triangular) after a jitter of 1e-7 per unit of its trace (its
        # diagonal is 1, so the trace is r): F = G_NL C^-T gives F F^T = G_NL (G_LL + jitter)^-1
        # G_LN, which never exceeds G (a Schur complement), so F's rows have norm <= 1 however
        # ill-conditioned G_LL is. One Cholesky and a triangular solve cost a third of an
        # eigendecomposition and the (N x r) x (r x r) product it needed.
        kl64, sql64 = kl.double(), sql.double()
        g_ll = self._gauss(kl64, sql64, kl64, sql64)
        g_ll.diagonal(dim1=-2, dim2=-1).add_(_NYSTROM_JITTER * r)
        chol = torch.linalg.cholesky(g_ll).to(work)
        cross = k @ kl.transpose(-1, -2)  # (B, N, r) k_i . k_l, shared by G_NL and the normaliser
        half = sq / 2.0
        # log sum_l G_il g_l over the landmarks (the attention form's normaliser, below); taken
        # before _gauss_from_cross may overwrite cross
        log_exact = torch.logsumexp(cross, dim=-1) - half if self.form == "attention" else None
        g_nl = _gauss_from_cross(cross, sq, sql)  # (B, N, r) exact kernel columns of the landmarks
        f = torch.linalg.solve_triangular(chol.transpose(-1, -2), g_nl, upper=True, left=False)
        f = f.masked_fill_(~mask.unsqueeze(-1), 0.0)  # (B, N, r)
        if self.form == "gaussian":  # K = (F / n) (F / n)^T
            self._set_factor(f * self.inv_n.to(work).view(-1, 1, 1), keys.dtype)
            return
        # K_ij = G_ij / (Q_i Q_j) with Q = G g, g_j = exp(sq_j / 2). g overflows for a unit far
        # from the rest (keys are rescaled to mean norm D, so one outlier in a single covariate
        # reaches sq ~ n), hence Q in log space:
        # - the landmark columns exactly (they carry the largest g_j):
        #   log sum_l G_il g_l = logsumexp_l (k_i . k_l - sq_i / 2);
        # - the other units through the factor, with g scaled by its largest value among them;
        # - every term is positive, so the exact part plus unit i's own term g_i is a lower bound
        #   the approximation may not go below (a value <= 0 would give inf / NaN).
        is_landmark = torch.zeros_like(mask).scatter(1, order, True)
        rest = mask & ~is_landmark
        top_rest = half.masked_fill(~rest, float("-inf")).amax(-1, keepdim=True)  # n > 2r: finite
        g_rest = torch.where(rest, torch.exp(half - top_rest), torch.zeros_like(half))  # <= 1
        approx_rest = ((g_rest.unsqueeze(1) @ f) @ f.transpose(-1, -2)).squeeze(1)  # as rows: see `rows`
        log_rest = torch.log(torch.maximum(approx_rest, g_rest)) + top_rest  # -inf where both are 0
        log_q = torch.logaddexp(log_exact, log_rest)
        inv_q = torch.where(mask, torch.exp(-log_q), torch.zeros_like(log_q))
        self.log_h = torch.where(mask, half + log_q, torch.zeros_like(log_q)).to(keys.dtype)
        # K = diag(1/Q) F F^T diag(1/Q): fold the normalisers into the factor. Its rows have
        # norm <= 1 / Q_i <= 1 (G_ii = 1, g >= 1), so the keys' precision holds it: a unit whose
        # row underflows in float32 has a kernel row ~0 in float64 too.
        if torch.is_grad_enabled() and f.requires_grad:
            f = inv_q.unsqueeze(-1) * f
        else:
            f.mul_(inv_q.unsqueeze(-1))  # in place: f is this function's own (B, N, r) block
        self._set_factor(f, keys.dtype)

    def _set_factor(self, factor: torch.Tensor, dtype: torch.dtype) -> None:
        """K = factor factor^T, products in the keys' dtype: each product streams the (B, N, r)
        factor twice, so float32 keys halve its cost."""
        self.factor = factor.to(dtype)
        self.factor_t = self.factor.transpose(-1, -2).contiguous()

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, N) or (B, N, C) -> K u of the same shape (0 on padded rows)."""
        if self.factor is not None or self.dense is not None:
            rows = u.unsqueeze(1) if u.ndim == 2 else u.transpose(-1, -2)
            out = self.rows(rows)
            return out.squeeze(1) if u.ndim == 2 else out.transpose(-1, -2)
        if self.form == "gaussian":
            out = self._gaussian_blocks(u.unsqueeze(-1) if u.ndim == 2 else u)
            return out.squeeze(-1) if u.ndim == 2 else out
        return kernel_matvec(self.keys, u, self.mask, self.log_h, self.block_size)

    def rows(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, C, N), C vectors per dataset as rows -> (B, C, N) the rows (K u_c)^T.

        Products with few vectors run as row vectors times the kernel (K is symmetric):
        ``(u^T F) F^T`` for a factor, ``u^T K`` for a dense kernel. BLAS handles a 2 x N by N x N
        (or N x r) product about twice as fast as the N x N by N x 2 one, and 3-4x for one vector.
        """
        if self.factor is not None:
            return ((u.to(self.factor.dtype) @ self.factor) @ self.factor_t).to(u.dtype)
        if self.dense is not None:
            return u @ self.dense
        return self(u.transpose(-1, -2)).transpose(-1, -2)



def free_and_target(t: torch.Tensor, mask: torch.Tensor, att: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which units are weighted and what they are balanced towards.

    Returns:
        free_treated (B, N): treated units with free weights (ATE datasets only);
        free_control (B, N): control units (always free);
        target (B, N): the target set G (all units for the ATE, the treated for the ATT).
    """
    treated = (t > 0.5) & mask
    control = (t <= 0.5) & mask
    ate = ~att.unsqueeze(1)
    return treated & ate, control, torch.where(ate, mask, treated)


class _Problem:
    """The per-arm quantities of f that do not depend on a (one kernel product)."""

    def __init__(self, op: KernelOperator, t, mask, att, lam):
        self.op = op
        self.f1, self.f0, target = free_and_target(t, mask, att)
        self.free = self.f1 | self.f0
        dt = op.keys.dtype
        g = target.to(dt)
        n_g = g.sum(-1, keepdim=True).clamp_min(1.0)
        self.m = op(g) / n_g  # m_j = <phi_j, mu_G>
        self.target, self.n_target = g, n_g
        self.M = (self.m * g).sum(-1, keepdim=True) / n_g  # <mu_G, mu_G>
        self.lam = torch.as_tensor(lam, dtype=dt, device=t.device).reshape(-1, 1)
        self.a1 = self.f1.to(dt)
        self.a0 = self.f0.to(dt)

    def _split(self, a):
        return a * self.a1, a * self.a0

    def _arm(self, v1, v0):
        """Per-unit value of a per-arm (B, 1) quantity."""
        return torch.where(self.f1, v1, v0)

    def products(self, a):
        """Pieces of f and its gradient at a: per-arm masses, m . a, and (K a_A)_j."""
        u1, u0 = self._split(a)
        ka = self.op.rows(torch.stack([u1, u0], 1))
        ka_arm = torch.where(self.f1, ka[:, 0], ka[:, 1])
        s1, s0 = u1.sum(-1, keepdim=True), u0.sum(-1, keepdim=True)
        ma1, ma0 = (self.m * u1).sum(-1, keepdim=True), (self.m * u0).sum(-1, keepdim=True)
        return (s1, s0), (ma1, ma0), ka_arm

    def gradient(self, a):
        (s1, s0), (ma1, ma0), ka = self.products(a)
        s, ma = self._arm(s1, s0), self._arm(ma1, ma0)
        g = -2.0 + (self.M * s - ma - self.m * s + ka) / self.lam
        return torch.where(self.free, g, torch.zeros_like(g))

    def objective(self, a):
        """(B,) f summed over the free arms."""
        (s1, s0), (ma1, ma0), ka = self.products(a)
        aka = torch.where(self.free, a * ka, torch.zeros_like(a)).sum(-1)  # sum_A a_A^T K a_A
        quad = aka + (self.M * (s1.square() + s0.square()) - 2.0 * (s1 * ma1 + s0 * ma0)).squeeze(-1)
        return -2.0 * (s1 + s0).squeeze(-1) + quad / (2.0 * self.lam.squeeze(-1))

    @torch.no_grad()
    def factor_lipschitz(self) -> torch.Tensor:
        """(B, 1) the exact largest curvature of f over both arms, for a factorised kernel.

        With ``K = F F^T`` the features are the rows of F (N x r), and arm A's Hessian is
        ``Psi_A Psi_A^T / lam`` with the rows ``F_k - mu_G`` (k in A) as Psi_A: its top
        eigenvalue is that of the r x r matrix ``Psi_A^T Psi_A``. One pass over F (N r^2 time)
        replaces the power iteration's kernel products.
        """
        F = self.op.factor.to(self.m.dtype)  # (B, N, r), zero on padded units
        # Psi_A^T Psi_A = S_A - s_A mu^T - mu s_A^T + n_A mu mu^T with S_A = F_A^T F_A and s_A the
        # sum of the arm's rows: no (B, N, r) temporaries beyond one. The treated's S comes from
        # one product and the controls' by difference (with the treated fixed or free, F's rows
        # split into exactly those two sets).
        treated = self.op.mask & ~self.f0
        s_treated = (F * treated.unsqueeze(-1).to(F.dtype)).transpose(-1, -2) @ F
        s_all = F.transpose(-1, -2) @ F
        arms = torch.stack([self.a1, self.a0], 1)  # (B, 2, N)
        sums = (arms @ F).double()  # (B, 2, r)
        counts = arms.sum(-1).double()  # (B, 2)
        free_treated = self.f1.any(-1).to(F.dtype).view(-1, 1, 1)  # 0 for ATT datasets (treated fixed)
        grams = torch.stack([s_treated * free_treated, s_all - s_treated], 1).double()
        mu = ((self.target.unsqueeze(1) @ F) / self.n_target.unsqueeze(-1)).double()  # (B, 1, r)
        cross = sums.unsqueeze(-1) * mu.unsqueeze(1)  # (B, 2, r, r): s_A mu^T
        grams = grams - cross - cross.transpose(-1, -2) + counts[..., None, None] * (mu.transpose(-1, -2) @ mu).unsqueeze(1)
        top = torch.linalg.eigvalsh(grams)[..., -1].amax(-1).to(self.m.dtype)
        return top.clamp_min(1e-12 * self.lam.squeeze(-1)).unsqueeze(-1) / self.lam

    @torch.no_grad()
    def lipschitz(self, iters: int | None = None) -> torch.Tensor:
        """(B, 1) upper estimate of the largest curvature of f over both arms (power iteration)."""
        iters = _POWER_ITERS if iters is None else iters
        # Start away from the uniform vector, on which the iteration can stall for arms that
        # already resemble their target (H 1 is then small): each unit's entry is a function of
        # its own key along a fixed random direction, so the start (and the step size) is
        # permutation-equivariant. The direction's first entries and the projection's scale
        # (its root mean square over the dataset) do not depend on how many all-zero padding
        # columns the keys carry, so neither does the step size.
        keys = self.op.keys
        D = keys.shape[-1]
        gen = torch.Generator().manual_seed(0)
        direction = torch.randn(max(D, _DIRECTION_LEN), generator=gen, dtype=torch.float64)[:D]
        proj = keys @ direction.to(keys.device, keys.dtype)
        mask = self.op.mask
        n = mask.sum(-1, keepdim=True).clamp_min(1).to(proj.dtype)
        rms = (torch.where(mask, proj, torch.zeros_like(proj)).square().sum(-1, keepdim=True) / n).sqrt()
        wiggle = torch.tanh(proj / rms.clamp_min(1e-12)).to(self.m.dtype)
        v = self.free.to(self.m.dtype) * (1.0 + 0.5 * wiggle)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        top = torch.zeros_like(self.lam)
        for _ in range(iters):
            hv = self.gradient(v) + 2.0 * self.free.to(v.dtype)  # H v / lam (gradient is affine)
            top = hv.norm(dim=-1, keepdim=True)
            v = hv / top.clamp_min(1e-30)
        # power iteration approaches the top eigenvalue from below: keep a margin
        return 1.25 * top.clamp_min(1e-12)


#: Nystrom regulariser: G_LL + jitter * r * I before its Cholesky factor (r landmarks, unit diagonal)
_NYSTROM_JITTER = 1e-7
#: power iterations for the step size (each one kernel product)
_POWER_ITERS = 10
#: length of the fixed random draw whose first D entries direct the power iteration's start
_DIRECTION_LEN = 128
#: above this many units (and without a dense kernel) the step size comes from a subsample
LIPSCHITZ_SUBSAMPLE = 2048


def _lipschitz(prob: _Problem, keys, t, mask, att, lam, max_elements) -> torch.Tensor:
    """(B, 1) curvature bound for the step size 1 / L.

    With a Nystrom factor the top curvature is exact and cheap (`_Problem.factor_lipschitz`).
    Otherwise power iteration costs _POWER_ITERS kernel products; on large block-wise datasets
    it runs on a fixed random subsample of LIPSCHITZ_SUBSAMPLE units instead. The kernel's entries scale like
    1/N^2 (h ~ N) and f sums over N units, so lambda_max / lam scales like 1/N at a fixed lam;
    the subsample's estimate is rescaled by n_sub / N (times 1.2 for the sampling error). Only
    the step size depends on it, never the problem being solved; but a fixed number of steps
    (early stopping, the default) lands at a slightly different point for a different step size:
    a 1,200-unit dataset alone vs batched with a 2,600-unit one differs by total variation ~0.004
    in its weights.
    """
    N = keys.shape[1]
    if prob.op.factor is not None:
        # the same 1.25 margin as the power iteration's, so the step size is about the same
        # whichever regime the kernel is in (the model is trained mostly on dense kernels)
        return 1.25 * prob.factor_lipschitz()
    if prob.op.dense is not None or N <= LIPSCHITZ_SUBSAMPLE:
        return prob.lipschitz()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(N, generator=gen)[:LIPSCHITZ_SUBSAMPLE].sort().values.to(keys.device)
    m_sub = mask[:, idx]
    sub = _Problem(KernelOperator(keys[:, idx], m_sub, max_elements, form=prob.op.form), t[:, idx], m_sub, att, lam)
    ratio = (m_sub.sum(-1, keepdim=True).clamp_min(1) / mask.sum(-1, keepdim=True).clamp_min(1)).to(keys.dtype)
    return 1.2 * sub.lipschitz() * ratio


def solve_target_balance(
    keys: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    lam: torch.Tensor | float,
    att: torch.Tensor,
    alpha0: torch.Tensor | None = None,
    steps: int = 30,
    max_elements: int = DEFAULT_BLOCK_ELEMENTS,
    tol: float | None = None,
    landmarks: int | None = None,
    form: str = "attention",
) -> dict[str, torch.Tensor]:
    """Target-balancing weights by ``steps`` unrolled FISTA steps (each one attention layer).

    Args:
        keys: (B, N, D) tied keys (e.g. `cina.core.balancing.covariate_keys`).
        t: (B, N) 0/1; mask: (B, N) bool; att: (B,) bool, True for ATT datasets.
        lam: absolute penalty, float or (B,) (`cina.CInA` uses lam / N per dataset).
        alpha0: (B, N) starting weights in [0, 1] (the network's guess); None = all ones
            (the difference in means).
        steps: FISTA steps; with ``tol`` the loop stops early once the largest change of a
            weight in a step is below tol (per-dataset fits; keep None when training).
        landmarks: Nystrom rank for datasets too large for a dense kernel (`KernelOperator`);
            None = exact row blocks (O(N^2) time per step).
        form: the kernel form, "gaussian" or "attention" (`KernelOperator`); the keys must
            match it (`gaussian_keys` or `cina.core.balancing.covariate_keys`).

    Returns:
        dict: ``alpha`` (B, N) raw weights in [0, 1] (ATT treated 1, padding 0), ``objective``
        (B,) f at alpha divided by N, ``step_change`` (B,) the largest |change| of a weight in
        the last step (a convergence diagnostic), ``steps`` (int) taken.
    """
    dt = keys.dtype
    t = t.to(dt)
    op = KernelOperator(keys, mask, max_elements, landmarks, form)
    prob = _Problem(op, t, mask, att, lam)
    L = _lipschitz(prob, keys, t, mask, att, lam, max_elements)
    fixed = torch.where((t > 0.5) & mask & att.unsqueeze(1), torch.ones_like(t), torch.zeros_like(t))
    start = torch.ones_like(t) if alpha0 is None else alpha0.to(dt).clamp(0.0, 1.0)
    a = torch.where(prob.free, start, fixed)
    z = a
    tk = torch.ones(t.shape[0], 1, dtype=dt, device=t.device)
    change = torch.zeros(t.shape[0], dtype=dt, device=t.device)
    taken = 0
    for taken in range(1, steps + 1):
        a_next = torch.where(prob.free, (z - prob.gradient(z) / L).clamp(0.0, 1.0), fixed)
        step = a_next - a
        # Adaptive restart (O'Donoghue & Candes 2015): drop the momentum of a dataset whose
        # step turned against its gradient mapping; removes FISTA's ripples on flat problems.
        restart = (((z - a_next) * step).sum(-1, keepdim=True) > 0).detach()
        tk = torch.where(restart, torch.ones_like(tk), tk)
        tk_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tk * tk))
        z = a_next + ((tk - 1.0) / tk_next) * step
        change = step.detach().abs().amax(-1)
        a, tk = a_next, tk_next
        if tol is not None and bool((change < tol).all()):
            break
    n = mask.sum(-1).clamp_min(1).to(dt)
    return {"alpha": a, "objective": prob.objective(a) / n, "step_change": change, "steps": taken}


def target_objective(keys, t, mask, lam, att, alpha, max_elements: int = DEFAULT_BLOCK_ELEMENTS,
                     form: str = "attention") -> torch.Tensor:
    """(B,) f(alpha) / N, the quantity `solve_target_balance` minimises (for tests and diagnostics)."""
    op = KernelOperator(keys, mask, max_elements, form=form)
    n = mask.sum(-1).clamp_min(1).to(keys.dtype)
    return _Problem(op, t.to(keys.dtype), mask, att, lam).objective(alpha.to(keys.dtype)) / n

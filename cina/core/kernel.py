"""The attention kernel of the balancing layers: keys, softmax normaliser and kernel products.

With tied keys/queries ``k_i in R^D`` the scores are ``s_ij = k_i . k_j / sqrt(D)``, the softmax
normaliser ``h_i = sum_j exp(s_ij)`` and the induced kernel ``K_ij = exp(s_ij) / (h_i h_j)``
(PSD: ``D^-1 exp(S) D^-1``). Every balancing layer (`cina.core.balancing`, the paper's SVM layer;
`cina.core.target_balancing`) only ever needs products with K.

K is never formed: it is evaluated in log space, ``K_ij = exp(s_ij - log h_i - log h_j)``, whose
entries are <= 1 because ``log h_i >= s_ij`` and ``log h_j >= s_jj >= 0``, so nothing overflows.
``K u`` and ``log h`` are computed in row blocks of ``block_size`` queries: peak memory is
O(B * block_size * N), never N x N, and under autograd each block is checkpointed, so training
memory is O(N) too. Everything works on a padded batch and respects a unit mask in every
normaliser and every sum.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["CONSTANT_RTOL", "DEFAULT_BLOCK_ELEMENTS", "auto_block_size", "covariate_keys", "dense_kernel", "kernel_matvec",
           "log_normalizer", "normalize_keys", "standardize_covariates"]

# Elements of one (B, block, N) score block; 2**24 float32 = 64 MiB per temporary.
DEFAULT_BLOCK_ELEMENTS = 2**24


def auto_block_size(batch_size: int, n_units: int, max_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Query-block size so one (B, block, N) temporary holds at most ``max_elements`` entries."""
    return int(max(16, min(n_units, max_elements // max(1, batch_size * n_units))))


def _row_blocks(fn, n: int, bs: int, q: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """``cat([fn(q[:, i:i+bs], *args) for each row block], dim=1)``.

    With several blocks under autograd each block is checkpointed (recomputed in the backward
    pass), so the (B, bs, N) temporaries are never all alive at once: O(N) training memory.
    """
    if n <= bs:
        return fn(q, *args)
    grad = torch.is_grad_enabled() and any(a.requires_grad for a in (q, *args))
    outs = []
    for i in range(0, n, bs):
        qb = q[:, i : i + bs]
        outs.append(checkpoint(fn, qb, *args, use_reentrant=False) if grad else fn(qb, *args))
    return torch.cat(outs, dim=1)


def normalize_keys(keys: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Centre and rescale keys per dataset ("set norm").

    Args:
        keys: (B, N, D) raw keys.
        mask: (B, N) bool, True for real units.

    Returns:
        (B, N, D) keys with masked mean 0 and mean squared norm D over the real units (padded rows
        are 0). Why: minimising the hinge loss over the keys prefers ever more peaked kernels (the
        arms become easier to separate, cf. cina_method.md §2.4 caveat 2). Fixing the scale bounds
        the scores at about ``|s_ij| <= sqrt(D)`` on average, so the kernel's dynamic range is set
        by ``D`` and cannot degenerate. Centring makes the kernel invariant to a shift of all keys.
    """
    m = mask.unsqueeze(-1).to(keys.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    centred = (keys - (keys * m).sum(1, keepdim=True) / n) * m
    mean_sq = (centred.square().sum((1, 2), keepdim=True) / (n * keys.shape[-1]))
    return centred * torch.rsqrt(mean_sq + eps)


#: A column is constant when its standard deviation is at most this fraction of its largest
#: magnitude, ``sd <= CONSTANT_RTOL * max|x|``: relative to the column's own scale, so the unit
#: of measurement (1e-7, 1e19) never decides, and about the resolution of float32 data
#: (6e-8), below which a column's variation is rounding noise. `cina.core.checks` reports
#: such columns.
CONSTANT_RTOL = 1e-7


def standardize_covariates(x: torch.Tensor, unit_mask: torch.Tensor, feature_mask: torch.Tensor,
                           stats_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-dataset standardised covariates, the input of the network and of the covariate kernel.

    Args:
        x: (B, N, D) raw covariates; unit_mask: (B, N) real units; feature_mask: (B, D) real columns.
        stats_mask: (B, N) the units whose mean and sd define the standardisation (default:
            unit_mask); new units to be predicted are standardised like the dataset they join.

    Returns:
        (B, N, D) in x's floating dtype (float32 for integer x): each real column centred and
        scaled to unit variance over the real units, clipped at +-10 SD (heavy-tailed real
        covariates such as earnings must not dominate the input scale the network was trained
        on); constant columns (``sd <= CONSTANT_RTOL * max|x|``), padded units and padded
        features are 0.

    Computed in float64 whatever x's dtype, on each column divided by its largest magnitude
    first, so no unit of measurement under- or overflows: a column in units of 1e-7 or 1e19
    gives the same standardised values as in units of 1 (up to float64 rounding). Callers
    that have the raw values in float64 should pass them, not a float32 copy.
    """
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    valid = unit_mask.unsqueeze(-1) & feature_mask.unsqueeze(1)
    x = torch.where(valid, x.to(torch.float64), torch.zeros((), dtype=torch.float64, device=x.device))
    stats = unit_mask if stats_mask is None else stats_mask & unit_mask
    m = stats.unsqueeze(-1).to(x.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mag = (x * m).abs().amax(1, keepdim=True)  # (B, 1, D); padding is 0 and cannot raise it
    x = x / torch.where(mag > 0, mag, torch.ones_like(mag))
    mean = (x * m).sum(1, keepdim=True) / n
    var = ((x - mean).square() * m).sum(1, keepdim=True) / n
    ok = var > CONSTANT_RTOL**2  # constant columns carry no information
    xs = ((x - mean) * torch.rsqrt(torch.where(ok, var, torch.ones_like(var)))).clamp(-10.0, 10.0)
    return torch.where(valid & ok, xs, torch.zeros_like(xs)).to(out_dtype)


def covariate_keys(x: torch.Tensor, unit_mask: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """Keys of the fixed attention kernel on the covariates: ``s_ij = x_i . x_j / sqrt(d)``.

    Args:
        x: (B, N, D) standardised covariates, zero on padded units and features.
        unit_mask: (B, N); feature_mask: (B, D) valid features (d = its row sum).

    Returns:
        (B, N, D) float32 keys: `normalize_keys` of x rescaled so the scores are those of
        ``normalize_keys`` on the d valid columns alone. Padded columns contribute nothing, so
        the kernel is exactly Algorithm 1's (`cina.core.single`, ``learn_keys=False``) for any D.
    """
    d = feature_mask.sum(-1).clamp_min(1).to(torch.float32).view(-1, 1, 1)
    return normalize_keys(x.float(), unit_mask) * (d / x.shape[-1]) ** 0.25


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])


# A finite "minus infinity" for padded columns: exp() gives exactly 0, and unlike -inf it never
# meets a 0 in a matmul (0 * inf = NaN) nor makes an empty row's logsumexp NaN.
_NEG = -1e30


def _scaled(keys: torch.Tensor) -> torch.Tensor:
    # s_ij = (k_i D^-1/4) . (k_j D^-1/4): the 1/sqrt(D) goes into the keys, saving a pass.
    return keys * keys.shape[-1] ** -0.25


def log_normalizer(keys: torch.Tensor, mask: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """``log h_i = logsumexp_{j valid} s_ij`` with tied keys, block-wise over query rows.

    Args:
        keys: (B, N, D) float keys.
        mask: (B, N) bool.
        block_size: query rows per block (default: `auto_block_size`).

    Returns:
        (B, N) log normalisers; 0 on padded rows.
    """
    B, N, _ = keys.shape
    bs = block_size or auto_block_size(B, N)
    ks = _scaled(keys)
    # Augmented keys fold the padding mask into the matmul: [k_i, 1] . [k_j, bias_j] = s_ij + bias_j.
    q = torch.cat([ks, torch.ones_like(ks[..., :1])], -1)
    k = torch.cat([ks, torch.where(mask, 0.0, _NEG).to(ks.dtype).unsqueeze(-1)], -1)

    def rows(qb: torch.Tensor, kk: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(qb @ kk.transpose(-1, -2), dim=-1)

    return _row_blocks(rows, N, bs, q, k).masked_fill(~mask, 0.0)


def kernel_matvec(
    keys: torch.Tensor,
    u: torch.Tensor,
    mask: torch.Tensor,
    log_h: torch.Tensor | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """``(K u)_i = sum_j exp(s_ij - log h_i - log h_j) u_j``, block-wise, never N x N.

    This equals the attention output ``softmax(S) V`` for ``V = u / h``.

    One matmul per block gives the exponent ``s_ij - log h_j - s_ii / 2``, which is <= 0 for tied
    keys (Cauchy-Schwarz: s_ij <= (s_ii + s_jj) / 2, and log h_j >= s_jj >= 0), so exp() cannot
    overflow; the row factor ``exp(s_ii / 2 - log h_i) <= 1`` is applied after the sum. Each
    block costs a matmul, an in-place exp and a matrix-vector product: the minimum memory traffic.

    Args:
        keys: (B, N, D); u: (B, N) or (B, N, C) (C vectors at the cost of one; padded entries
            ignored); mask: (B, N) bool.
        log_h: (B, N) from `log_normalizer` (computed if None).

    Returns:
        the shape of u; 0 on padded rows.
    """
    B, N, _ = keys.shape
    bs = block_size or auto_block_size(B, N)
    if log_h is None:
        log_h = log_normalizer(keys, mask, bs)
    ks = _scaled(keys)
    half_self = 0.5 * ks.square().sum(-1, keepdim=True)  # s_ii / 2, (B, N, 1)
    one = torch.ones_like(half_self)
    q = torch.cat([ks, one, -half_self], -1)
    k = torch.cat([ks, torch.where(mask, -log_h, _NEG).unsqueeze(-1), one], -1)
    vector = u.ndim == 2
    u = u.unsqueeze(-1) if vector else u  # (B, N, C)
    u = torch.where(mask.unsqueeze(-1), u, torch.zeros_like(u))

    def rows(qb: torch.Tensor, kk: torch.Tensor, uu: torch.Tensor) -> torch.Tensor:
        return (qb @ kk.transpose(-1, -2)).exp_() @ uu

    out = _row_blocks(rows, N, bs, q, k, u) * torch.exp(half_self - log_h.unsqueeze(-1))
    out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
    return out.squeeze(-1) if vector else out


def dense_kernel(keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The full (B, N, N) kernel ``K_ij = exp(s_ij) / (h_i h_j)`` (0 on padded rows/cols).

    O(N^2) memory: for tests, Algorithm 1 and small datasets only.
    """
    s = _scores(keys, keys)
    pair = mask.unsqueeze(1) & mask.unsqueeze(2)
    log_h = torch.logsumexp(s.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1).masked_fill(~mask, 0.0)
    logk = s - log_h.unsqueeze(-1) - log_h.unsqueeze(1)
    return logk.masked_fill(~pair, float("-inf")).exp()

"""Noise families and graph samplers: distributional checks with tolerances from the maths."""

import numpy as np
import pytest
from scipy import stats

from causalgen.prior.graph import erdos_renyi, reachability, scale_free
from causalgen.prior.noise import TRANSFORMS, gaussian_from_uniforms, student_t4_from_uniforms, uniforms

N = 400_000


@pytest.mark.parametrize("family", sorted(TRANSFORMS))
def test_noise_families_have_mean_zero_and_unit_variance(family):
    u = uniforms(np.random.default_rng(0), (N,))
    z = TRANSFORMS[family](u).astype(np.float64)
    assert z.dtype == np.float64 and np.all(np.isfinite(z))
    # mean: sd 1/sqrt(N); variance: the sample variance has sd sqrt((kurtosis - 1) / N)
    kurt = stats.kurtosis(z, fisher=False)
    assert abs(z.mean()) < 5 / np.sqrt(N)
    assert abs(z.var() - 1.0) < 6 * np.sqrt((kurt - 1) / N) + 0.01 * (family == "student_t")


def test_gaussian_is_gaussian_and_student_t_matches_scipy():
    u = uniforms(np.random.default_rng(1), (N,))
    z = gaussian_from_uniforms(u)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    q = np.array([0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999], dtype=np.float32)
    np.testing.assert_allclose(student_t4_from_uniforms(q), stats.t.ppf(q, 4) / np.sqrt(2), rtol=1e-4, atol=1e-5)


def test_uniforms_avoid_the_endpoints():
    u = uniforms(np.random.default_rng(2), (N,))
    assert u.min() > 0 and u.max() < 1


def test_erdos_renyi_density_and_acyclicity():
    rng = np.random.default_rng(0)
    j, k = 20, 2.0
    counts = [erdos_renyi(rng, j, k).sum() for _ in range(300)]
    p = 2 * k / (j - 1)
    pairs = j * (j - 1) / 2
    assert abs(np.mean(counts) - p * pairs) < 5 * np.sqrt(p * (1 - p) * pairs / 300)
    adj = erdos_renyi(rng, j, k)
    assert not np.tril(adj).any()


def test_scale_free_has_hubs_and_m_parents():
    rng = np.random.default_rng(0)
    adj = scale_free(rng, 60, 2)
    indeg = adj.sum(0)
    assert indeg[0] == 0 and indeg[1] == 1 and np.all(indeg[2:] == 2)
    outdeg = adj.sum(1)
    assert outdeg.max() >= 4 * np.median(outdeg)  # heavy-tailed: hubs exist
    assert not np.tril(adj).any()


def test_reachability_matches_networkx():
    import networkx as nx

    adj = erdos_renyi(np.random.default_rng(5), 15, 1.5)
    g = nx.DiGraph(list(zip(*np.nonzero(adj))))
    g.add_nodes_from(range(15))
    reach = reachability(adj)
    for i in range(15):
        assert set(np.flatnonzero(reach[i])) == nx.descendants(g, i)

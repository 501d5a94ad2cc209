"""cina.eval.benchmarks: loaders against the truths documented in each SOURCE.md, errors, synthetic suites.

Tests that read ``../shared/benchmarks`` (or ``$CINA_BENCHMARKS``) skip when it is absent.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

import causalgen
from causalgen.store.splits import split_of
from cina.eval import benchmarks as bm

DATA = bm.default_data_dir()
needs_data = pytest.mark.skipif(DATA is None or not DATA.is_dir(),
                                reason="benchmark folder absent (../shared/benchmarks or $CINA_BENCHMARKS)")


# --------------------------------------------------------------------------------------------
# real benchmarks (truths from SOURCE.md)


@needs_data
def test_ihdp_truths_match_source():
    recs = list(bm.load_ihdp(DATA))
    assert len(recs) == 1000
    truths = np.array([r.truth for r in recs])
    assert round(truths.mean(), 2) == 4.40  # ihdp/SOURCE.md: mean over 1000 reps 4.400
    assert round(truths[:100].mean(), 3) == 4.516 and round(truths[:10].mean(), 2) == 4.75
    assert recs[0].truth == pytest.approx(4.0161, abs=1e-4) and recs[0].name == "ihdp-0001"
    r = recs[0]
    assert r.x.shape == (747, 25) and r.n_treated == 139 and r.estimand == "ate"
    assert set(np.unique(r.x[:, 13])) == {1.0, 2.0}  # x14 kept as stored (1/2)
    # every replication agrees with the per-replication table shipped next to the data
    with open(DATA / "ihdp" / "ihdp_true_ate.csv") as f:
        table = {int(row["replication"]): row for row in csv.DictReader(f)}
    assert np.allclose(truths, [float(table[i]["ate_mu"]) for i in range(1, 1001)], atol=1e-5)
    # ATT of setting A is exactly 4
    att = [r.truth for r in bm.load_ihdp(DATA, replications=[1, 2, 500], estimand="att")]
    assert np.allclose(att, 4.0, atol=1e-6)
    assert np.allclose(recs[0].ite.mean(), recs[0].truth)
    with pytest.raises(ValueError, match="replication 1001 out of range"):
        next(bm.load_ihdp(DATA, replications=[1001]))


@needs_data
def test_lalonde_truth_and_samples_match_source():
    assert bm.lalonde_experimental_att(DATA) == pytest.approx(bm.LALONDE_EXPERIMENTAL_ATT, abs=0.005)
    recs = {r.name: r for r in bm.load_lalonde(DATA, samples=("nsw", "psid1", "cps1", "psid2", "cps3"))}
    for r in recs.values():
        assert r.estimand == "att" and r.truth == pytest.approx(1794.34, abs=0.005)
        assert r.covariates == bm.LALONDE_COVARIATES and r.n_covariates == 8
    sizes = {k: (r.n_units, r.n_treated) for k, r in recs.items()}
    assert sizes == {"lalonde-nsw": (445, 185), "lalonde-psid1": (2675, 185), "lalonde-cps1": (16177, 185),
                     "lalonde-psid2": (185 + 253, 185), "lalonde-cps3": (185 + 429, 185)}
    # naive differences in means quoted in lalonde/SOURCE.md
    dim = {k: r.y[r.t == 1].mean() - r.y[r.t == 0].mean() for k, r in recs.items()}
    assert dim["lalonde-nsw"] == pytest.approx(1794.34, abs=0.01)
    assert dim["lalonde-psid1"] == pytest.approx(-15204.78, abs=0.01)
    assert dim["lalonde-cps1"] == pytest.approx(-8497.52, abs=0.01)
    assert dim["lalonde-psid2"] == pytest.approx(-3646.8, abs=0.1)
    # the stacked rows are those of lalonde/combined/ (which has 4 decimals)
    with open(DATA / "lalonde" / "combined" / "nsw_dw_treated_psid1_controls.csv") as f:
        rows = list(csv.DictReader(f))
    combined = np.array([[float(row[c]) for c in ("treat", *bm.LALONDE_COVARIATES, "re78")] for row in rows])
    p = recs["lalonde-psid1"]
    assert np.allclose(np.column_stack([p.t, p.x, p.y]), combined, atol=6e-5)
    with pytest.raises(ValueError, match="effect on the treated"):
        next(bm.load_lalonde(DATA, estimand="ate"))
    with pytest.raises(KeyError, match="unknown LaLonde sample 'psid9'"):
        next(bm.load_lalonde(DATA, samples=["psid9"]))


@needs_data
def test_realcause_truths_match_the_table():
    with open(DATA / "realcause" / "realcause_true_ate.csv") as f:
        table = {(row["dataset"], int(row["sample"])): row for row in csv.DictReader(f)}
    psid = list(bm.load_realcause(DATA, datasets=["lalonde_psid"]))
    assert [r.meta["sample"] for r in psid] == list(range(100))  # numeric, not lexical, order
    assert np.allclose([r.truth for r in psid], [float(table[("lalonde_psid", i)]["ate"]) for i in range(100)], atol=1e-4)
    assert np.mean([r.truth for r in psid]) == pytest.approx(-13347.0, abs=0.5)
    assert psid[0].truth == pytest.approx(-13856.37, abs=0.01) and psid[0].n_treated == 151
    assert psid[0].covariates == bm.LALONDE_COVARIATES and psid[0].x.shape == (2675, 8)
    cps = next(bm.load_realcause(DATA, datasets=["lalonde_cps"], samples=[0]))
    assert cps.truth == pytest.approx(-6977.13, abs=0.01) and cps.n_units == 16177
    twins = next(bm.load_realcause(DATA, datasets=["twins"], samples=[0], estimand="att"))
    assert twins.x.shape == (11984, 75)
    assert twins.truth == pytest.approx(float(table[("twins", 0)]["att"]), abs=1e-6)
    with pytest.raises(FileNotFoundError, match=r"lalonde_cps_sample99\.csv\.gz"):
        next(bm.load_realcause(DATA, datasets=["lalonde_cps"], samples=[99]))


@needs_data
def test_twins_truth_matches_source():
    (rec,) = list(bm.load_twins(DATA))
    assert rec.truth == pytest.approx(-0.0252, abs=5e-6)
    assert rec.x.shape == (11984, 75) and rec.covariates[0] == "eclamp" and rec.covariates[-1] == "dlivord_min"
    assert rec.y[rec.t == 1].mean() - rec.y[rec.t == 0].mean() == pytest.approx(-0.1121, abs=1e-3)  # naive, SOURCE.md
    subs = list(bm.load_twins(DATA, subsample_size=2000, n_subsamples=3, seed=1))
    assert [s.n_units for s in subs] == [2000] * 3
    for s in subs:  # each subsample carries its own truth
        assert s.truth == pytest.approx(s.ite.mean()) and s.meta["subsampled_from"] == 11984
    assert len({round(s.truth, 6) for s in subs}) > 1


@needs_data
def test_ihdp_100_split_matches_source():
    """ihdp/SOURCE.md: the CFRNet test split is 75 units per replication, each found in the
    matching full replication (672 train + 75 test = 747); truths are means of mu1 - mu0."""
    recs = list(bm.load_ihdp_100(DATA))
    assert len(recs) == 100 and recs[0].name == "ihdp100-0001" and recs[0].suite == "ihdp-100"
    with open(DATA / "ihdp" / "ihdp_true_ate.csv") as f:
        table = {int(row["replication"]): row for row in csv.DictReader(f)}
    with np.load(DATA / "ihdp" / "npz_100" / "ihdp_npci_1-100.test.npz") as z:
        test_x, test_mu0, test_mu1 = z["x"], z["mu0"], z["mu1"]
    full = {r.meta["replication"]: r for r in bm.load_ihdp(DATA, replications=range(1, 101))}
    n_test_treated = set()
    for r in recs:
        rep = r.meta["replication"]
        assert r.n_units == 672 and r.x_new.shape == (75, 25) and r.ite_new.shape == (75,)
        rows = r.meta["test_rows"]
        assert len(set(rows)) == 75 and r.n_units + len(rows) == 747
        f = full[rep]
        train = np.setdiff1d(np.arange(747), rows)
        np.testing.assert_array_equal(r.x, f.x[train])
        np.testing.assert_array_equal(r.x_new, test_x[:, :, rep - 1])
        np.testing.assert_array_equal(f.x[rows], r.x_new)  # the test units are units of the replication
        np.testing.assert_array_equal(r.ite, f.ite[train])
        np.testing.assert_array_equal(r.ite_new, test_mu1[:, rep - 1] - test_mu0[:, rep - 1])
        assert r.truth == pytest.approx(r.ite.mean(), rel=1e-12)
        # train and test together are the whole replication: its ATE (ihdp_true_ate.csv) and 139 treated
        assert (r.ite.sum() + r.ite_new.sum()) / 747 == pytest.approx(float(table[rep]["ate_mu"]), abs=1e-5)
        n_test_treated.add(r.n_treated + int(f.t[rows].sum()))
    assert n_test_treated == {139}
    assert len({tuple(r.meta["test_rows"][:5]) for r in recs}) > 50  # a new split per replication
    # setting A: the ATT over all 139 treated is exactly 4 (SOURCE.md); the train split's treated
    # are most of them, so theirs is near 4 but not equal
    att = next(bm.load_ihdp_100(DATA, replications=[1], estimand="att"))
    assert att.truth == pytest.approx(att.ite[att.t == 1].mean()) and 0 < abs(att.truth - 4.0) < 0.1


def test_ihdp_100_loader_on_a_tiny_folder(tmp_path):
    """The split logic without the real files: 12 units, 2 replications, 3 test units each; a test
    row that is not in the full replication is refused, naming it."""
    rng = np.random.default_rng(0)
    n, reps = 12, 2
    x = rng.standard_normal((n, 25))
    t = np.r_[np.ones(5), np.zeros(7)]
    mu0, mu1 = rng.standard_normal((n, reps)), rng.standard_normal((n, reps)) + 4
    yf = np.where(t[:, None] == 1, mu1, mu0) + 0.1
    (tmp_path / "ihdp" / "npz_1000").mkdir(parents=True)
    (tmp_path / "ihdp" / "npz_100").mkdir(parents=True)
    np.savez(tmp_path / bm.IHDP_NPZ, x=x, t=t, yf=yf, ycf=yf, mu0=mu0, mu1=mu1)
    pick = np.array([[2, 7, 11], [0, 5, 6]]).T  # (3 test units, 2 reps)
    test = {"x": np.stack([x[pick[:, c]] for c in range(reps)], axis=2), "t": t[pick],
            "yf": np.take_along_axis(yf, pick, 0), "mu0": np.take_along_axis(mu0, pick, 0),
            "mu1": np.take_along_axis(mu1, pick, 0)}
    np.savez(tmp_path / bm.IHDP_TEST_NPZ, **test)
    recs = list(bm.load_ihdp_100(tmp_path))
    assert [r.n_units for r in recs] == [9, 9] and [list(r.meta["test_rows"]) for r in recs] == [[2, 7, 11], [0, 5, 6]]
    keep = np.setdiff1d(np.arange(n), [0, 5, 6])
    np.testing.assert_array_equal(recs[1].y, yf[keep, 1])
    assert recs[1].truth == pytest.approx(np.mean(mu1[keep, 1] - mu0[keep, 1]))
    np.testing.assert_array_equal(recs[1].ite_new, mu1[[0, 5, 6], 1] - mu0[[0, 5, 6], 1])
    assert next(bm.load_suite("ihdp-100", tmp_path, replications=[2])).name == "ihdp100-0002"
    test["mu0"] = test["mu0"].copy()
    test["mu0"][1, 1] += 1e-9
    np.savez(tmp_path / bm.IHDP_TEST_NPZ, **test)
    with pytest.raises(ValueError, match=r"replication 2: test row 1 is found 0 times"):
        list(bm.load_ihdp_100(tmp_path))
    with pytest.raises(ValueError, match="replication 3 out of range 1..2"):
        next(bm.load_ihdp_100(tmp_path, replications=[3]))


@needs_data
def test_load_suite_dispatch():
    assert next(bm.load_suite("ihdp", DATA, replications=[3])).name == "ihdp-0003"
    assert next(bm.load_suite("ihdp-100", DATA, replications=[3])).name == "ihdp100-0003"
    assert next(bm.load_suite("lalonde", DATA, samples=["psid1"])).name == "lalonde-psid1"
    with pytest.raises(KeyError, match="unknown suite 'acic'"):
        bm.load_suite("acic", DATA)


# --------------------------------------------------------------------------------------------
# errors name the missing folder / file / column (no data needed)


def test_missing_folder_file_and_column_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        next(bm.load_ihdp(tmp_path / "does-not-exist"))
    with pytest.raises(FileNotFoundError, match=r"IHDP 1000-replication npz: .*ihdp_npci_1-1000_riesznet\.npz"):
        next(bm.load_ihdp(tmp_path))
    folder = tmp_path / "lalonde" / "csv"
    folder.mkdir(parents=True)
    header = "data_id,treat,age,education,black,hispanic,married,nodegree,re74,re75,re78\n"
    (folder / "nsw_dw.csv").write_text(header + "DW,1,30,10,1,0,0,1,0,0,5000\nDW,0,31,11,1,0,0,1,0,0,4000\n")
    (folder / "psid_controls.csv").write_text(header.replace(",re78", "") + "PSID,0,40,12,0,0,1,0,1,2\n")
    (rec,) = list(bm.load_lalonde(tmp_path, samples=["nsw"]))
    assert rec.truth == 1000.0
    with pytest.raises(KeyError, match=r"psid_controls\.csv: missing column\(s\) \['re78'\]"):
        next(bm.load_lalonde(tmp_path, samples=["psid1"]))
    with pytest.raises(FileNotFoundError, match=r"cps_controls\.csv"):
        next(bm.load_lalonde(tmp_path, samples=["cps1"]))
    (folder / "psid_controls.csv").write_text(header + "PSID,2,40,12,0,0,1,0,1,2,3\n")
    with pytest.raises(ValueError, match="column 'treat' must be 0/1"):
        next(bm.load_lalonde(tmp_path, samples=["psid1"]))
    rc = tmp_path / "realcause" / "twins"
    rc.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no twins_sample"):
        next(bm.load_realcause(tmp_path, datasets=["twins"]))


def test_default_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(bm.ENV_VAR, str(tmp_path))
    assert bm.default_data_dir() == tmp_path and bm.resolve_data_dir() == tmp_path
    monkeypatch.setenv(bm.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match="gone"):
        bm.resolve_data_dir()


# --------------------------------------------------------------------------------------------
# synthetic suites


def test_synthetic_tasks_are_test_split_seeds_with_sample_truths():
    recs = list(bm.synthetic_tasks("default", 4, first_seed=10))
    seeds = [r.meta["seed"] for r in recs]
    assert len(recs) == 4 and all(split_of(s) == "test" for s in seeds) and min(seeds) >= 10
    for r, s in zip(recs, seeds):
        task = causalgen.sample_task("default", s)
        assert r.truth == pytest.approx(task.sate) and r.name == f"default-{s}"
        assert np.array_equal(r.y, task.y.astype(np.float64)) and r.t.dtype == np.int8
        assert r.ite.mean() == pytest.approx(r.truth, abs=1e-5)
    att = next(bm.synthetic_tasks("default", 1, first_seed=10, estimand="att"))
    assert att.truth == pytest.approx(causalgen.sample_task("default", seeds[0]).att)


def test_ood_suite_shifts_away_from_the_training_prior():
    base = causalgen.load_config("default")
    cfgs = bm.ood_configs("default")
    assert set(cfgs) == {"mechanism-shift", "graph-shift", "more-covariates"}
    mech = cfgs["mechanism-shift"]
    assert mech.mechanism.families == {"rff": 1.0} and mech.mechanism.rff_lengthscale[1] < base.mechanism.rff_lengthscale[0]
    assert cfgs["graph-shift"].kind == "setoguchi" and base.kind == "random_dag"
    recs = list(bm.ood_suite(3, "default", first_seed=0))
    by_shift = {}
    for r in recs:
        by_shift.setdefault(r.meta["shift"], []).append(r)
        assert r.suite == "synthetic-ood" and split_of(r.meta["seed"]) == "test"
    assert {k: len(v) for k, v in by_shift.items()} == {"mechanism-shift": 3, "graph-shift": 3, "more-covariates": 3}
    max_train_covariates = base.graph.n_nodes[1] - 2  # treatment and outcome are nodes too
    assert all(r.n_covariates > max_train_covariates for r in by_shift["more-covariates"])
    assert all(r.n_covariates == 10 for r in by_shift["graph-shift"])  # Setoguchi w1..w10
    with pytest.raises(KeyError, match="unknown shift 'noise'"):
        bm.ood_configs("default", shifts=["noise"])


def test_heldout_corpus_tasks_are_the_test_split(tmp_path):
    from causalgen.store.generate import CorpusSpec, generate_corpus

    cfg = causalgen.load_config("default").replace(n_units=(60, 80))
    generate_corpus(CorpusSpec(config=cfg.to_dict(), seed=3, num_tasks=24, shard_size=12), str(tmp_path / "c"), progress=False)
    recs = list(bm.heldout_corpus_tasks(tmp_path / "c"))
    from causalgen import open_corpus

    corpus = open_corpus(tmp_path / "c")
    expected = [i for i in range(len(corpus)) if split_of(corpus.task_seed(i)) == "test"]
    assert len(expected) > 0 and [r.meta["task_index"] for r in recs] == expected
    for r in recs:
        task = causalgen.sample_task(cfg, r.meta["seed"])
        assert r.truth == pytest.approx(task.sate) and r.n_units == task.n_units
    train = list(bm.heldout_corpus_tasks(tmp_path / "c", split="train", limit=3))
    assert len(train) == 3 and all(split_of(r.meta["seed"]) == "train" for r in train)


def test_subsample_keeps_treated_for_att_and_recomputes_known_truths():
    rec = next(bm.synthetic_tasks("default", 1, first_seed=0))
    rng = np.random.default_rng(0)
    n = 3000
    t = (rng.random(n) < 0.1).astype(np.int8)
    ite = rng.standard_normal(n) + 2 * t
    big = bm.BenchmarkDataset("big", "x", rng.standard_normal((n, 3)), t, rng.standard_normal(n), float(ite[t == 1].mean()),
                              "att", ite)
    sub = bm.subsample(big, 1000, seed=1)
    assert sub.n_units == 1000 and sub.n_treated == big.n_treated  # every treated unit kept
    assert sub.truth == pytest.approx(sub.ite[sub.t == 1].mean()) and sub.meta["subsampled_from"] == n
    ate = bm.subsample(bm.BenchmarkDataset("big", "x", big.x, t, big.y, float(ite.mean()), "ate", ite), 500)
    assert ate.n_units == 500 and abs(ate.t.mean() - t.mean()) < 0.01  # stratified
    assert ate.truth == pytest.approx(ate.ite.mean())
    no_ite = bm.subsample(bm.BenchmarkDataset("r", "x", big.x, t, big.y, 7.0, "att"), 1000)
    assert no_ite.truth == 7.0 and no_ite.meta["truth"] == "full-data truth"
    assert bm.subsample(rec, 10**6) is rec

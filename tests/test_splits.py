import numpy as np

from causalgen.store.splits import FRACTIONS, SPLITS, split_codes, split_of


def test_split_fractions_and_stability():
    seeds = np.arange(20_000) * 7919 + 13
    codes = split_codes(seeds)
    for i, name in enumerate(SPLITS):
        share = np.mean(codes == i)
        p = FRACTIONS[name]
        assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / len(seeds))
    # pure function of the seed: same answer in any order, pinned values
    assert [split_of(s) for s in range(12)] == ["train"] * 4 + ["test"] + ["train"] * 7
    assert split_codes(seeds[::-1]).tolist() == codes[::-1].tolist()

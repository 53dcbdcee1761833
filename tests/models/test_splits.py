"""Source-family validation split and the seeded prompt_id split."""

from __future__ import annotations

import numpy as np

from models.splits import auto_val_families, heldout_mask, source_family, split_by_families


def test_source_family_groups_slices() -> None:
    assert source_family("sharegpt_followup") == "sharegpt"
    assert source_family("instructionwild_user_3") == "instructionwild"
    assert source_family("arc_easy_train") == source_family("arc_challenge_train") == "arc"
    assert source_family("p3_xsum") == "p3_xsum"


def _toy() -> tuple[list[str], list[str]]:
    cats, srcs = [], []
    for cat, sources in {
        "a": {"s1": 50, "s2": 40, "s3": 10},
        "b": {"s4": 60, "s5": 30},
        "c": {"s6": 100},
    }.items():
        for src, n in sources.items():
            cats += [cat] * n
            srcs += [src] * n
    return cats, srcs


def test_auto_split_is_deterministic_and_respects_training_share() -> None:
    cats, srcs = _toy()
    fams = auto_val_families(cats, srcs, seed=0)
    assert fams == auto_val_families(cats, srcs, seed=0)
    split = split_by_families(cats, srcs, fams)
    c, m = np.array(cats), split.val_mask
    for cat in "abc":
        assert (~m & (c == cat)).sum() >= 0.6 * (c == cat).sum()
    assert "c" in split.thin_val_categories  # single-source category cannot be validated
    assert set(fams) <= {"s1", "s2", "s3", "s4", "s5"}
    assert not set(np.array(srcs)[m]) & set(np.array(srcs)[~m])  # no source on both sides


def test_heldout_mask_is_stratified_and_seeded() -> None:
    ids = [f"p{i}" for i in range(1000)]
    strata = ["x"] * 700 + ["y"] * 300
    m = heldout_mask(ids, strata, 0.2, seed=0)
    assert m[:700].sum() == 140 and m[700:].sum() == 60
    assert (m == heldout_mask(list(reversed(ids)), list(reversed(strata)), 0.2, 0)[::-1]).all()  # order-free
    assert (m != heldout_mask(ids, strata, 0.2, seed=1)).any()


def test_inner_family_folds_keep_families_whole_and_spread_sharegpt() -> None:
    from models.splits import inner_family_folds

    sources = ["a"] * 50 + ["b"] * 30 + ["arc_easy_train"] * 10 + ["arc_challenge_train"] * 10 + ["sharegpt"] * 200
    ids = [str(i) for i in range(len(sources))]
    folds = inner_family_folds(sources, ids, k=3, seed=0)
    for fam in (slice(0, 50), slice(50, 80), slice(80, 100)):  # arc easy + challenge = one family
        assert len(set(folds[fam].tolist())) == 1
    assert set(folds[100:].tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(folds, inner_family_folds(sources, ids, k=3, seed=0))

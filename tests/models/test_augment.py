"""Passage-insertion augmentation (models/augment.py) and its fold rule in the task head's cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from models.augment import (
    AugmentedRows,
    PassageAugmentConfig,
    build_pool,
    build_short_pool,
    insert_passage,
    passage_of,
)
from models.lexical import LexicalConfig
from models.task_cv import AugmentInputs, TaskSettings, cross_validate, fitting_rows

ARTICLE = (
    "The council approved the new budget on Tuesday after a long debate. Residents had asked for more money "
    "for parks and roads. The mayor said the plan would be reviewed next spring. Several members voted against "
    "it, citing rising costs. The budget takes effect in July and covers the next two years of spending."
)
CONFIG = PassageAugmentConfig(pool_size=40, min_passage_chars=100, max_passage_chars=400, seed=3)


def _data() -> tuple[list[str], list[str], list[str]]:
    """Four families: two give passages (summarization, extraction), two give base rows."""
    texts, cats, fams = [], [], []
    for k in range(10):
        texts.append(f"Summarize this news article.\n\nArticle: {ARTICLE} Item {k} of the news.")
        cats.append("summarization")
        fams.append("news")
        texts.append(f"Extract the date.\nContext: {ARTICLE.replace('council', f'board {k}')}\nQuestion: When?")
        cats.append("extraction")
        fams.append("ctx")
        texts.append(f"Is this review positive or negative?\nReview: great product number {k}")
        cats.append("classification")
        fams.append("reviews")
        texts.append(f"Which planet is number {k} from the sun?")
        cats.append("general_qa")
        fams.append("quiz")
    return texts, cats, fams


def test_passage_of_takes_prose_and_drops_labels_questions_and_code() -> None:
    assert passage_of(f"Summarize.\n\nArticle: {ARTICLE}", CONFIG) == ARTICLE
    assert passage_of(f"Summarize.\n\n{ARTICLE} Is that right?", CONFIG) is None  # a question: instruction text
    assert passage_of("def f(x):\n    return [x * 2 for x in range(10)] + {'a': 1}['a'] " * 3, CONFIG) is None
    assert passage_of("Кошка сидит на окне и смотрит на улицу, где идёт дождь. " * 4, CONFIG) is None
    assert passage_of("Short line.", CONFIG) is None


@pytest.mark.parametrize(
    ("text", "where", "first", "last"),
    [
        ("Read the review.\nReview: fine\nIs it positive?", "before_last_line", "Read the review.", "Is it positive?"),
        ("Read the review.\nReview: fine\nIs it positive?", "after_first_line", "Read the review.", "Is it positive?"),
        ("Which planet is largest?", "before", "PASSAGE", "Which planet is largest?"),
        ("Which planet is largest?", "after", "Which planet is largest?", "PASSAGE"),
    ],
)
def test_insertion_keeps_the_instruction_at_its_end(text: str, where: str, first: str, last: str) -> None:
    for seed in range(50):  # the seeded generator chooses between the two places; find the one under test
        out, at = insert_passage(text, "PASSAGE", np.random.default_rng(seed))
        if at == where:
            break
    else:
        pytest.fail(f"no seed chose {where}")
    lines = [ln for ln in out.split("\n") if ln.strip()]
    assert (lines[0], lines[-1]) == (first, last)
    assert (out.count("PASSAGE") == 1 and "\n\nPASSAGE" in out) or out.startswith("PASSAGE\n\n")
    assert sorted(ln for ln in lines if ln != "PASSAGE") == sorted(ln for ln in text.split("\n"))
    if where == "before_last_line":
        assert lines[-2] == "PASSAGE"
    if where == "after_first_line":
        assert lines[1] == "PASSAGE"


def test_pool_is_seeded_keeps_labels_and_draws_donors_from_allowed_rows_of_other_families() -> None:
    texts, cats, fams = _data()
    allowed = np.ones(len(texts), dtype=bool)
    allowed[[0, 4, 8]] = False  # three news rows and...
    allowed[[2, 3]] = False  # ...one review and one quiz row are off limits (a held-out part)
    pool = build_pool(texts, cats, fams, allowed, CONFIG)
    again = build_pool(texts, cats, fams, allowed, CONFIG)
    other = build_pool(texts, cats, fams, allowed, PassageAugmentConfig(**{**CONFIG.to_json(), "seed": 4}))
    assert pool.texts == again.texts and (pool.base == again.base).all() and (pool.donor == again.donor).all()
    assert pool.texts != other.texts
    # 10 base rows per default category as far as allowed rows go: 9 reviews, 10 contexts, 9 quiz, 0 reasoning
    assert len(pool) == 28
    assert allowed[pool.base].all() and allowed[pool.donor].all()
    assert {cats[b] for b in pool.base} <= set(CONFIG.categories)
    assert {cats[d] for d in pool.donor} <= set(CONFIG.donor_categories)
    assert all(fams[b] != fams[d] for b, d in zip(pool.base, pool.donor, strict=True))
    for text, b in zip(pool.texts, pool.base, strict=True):
        assert len(text) > len(texts[b]) + CONFIG.min_passage_chars // 2
        assert "council approved" in text or "board" in text  # an article sentence went in


def test_pool_needs_two_donor_families() -> None:
    texts, cats, _ = _data()
    with pytest.raises(ValueError, match="2\\+ source families"):
        build_pool(texts, cats, ["one"] * len(texts), np.ones(len(texts), dtype=bool), CONFIG)


def test_fold_mask_and_head() -> None:
    rows = AugmentedRows(["a", "b", "c", "d"], np.array([0, 1, 2, 3]), np.array([4, 4, 0, 5]), ["after"] * 4)
    fit = np.array([True, True, False, True, True, False])
    assert rows.fold_mask(fit).tolist() == [True, True, False, False]  # base 2 out; donor 5 out
    assert rows.head(0.5).tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="share"):
        rows.head(1.5)


def test_fitting_rows_add_only_variants_whose_base_and_donor_are_fitted() -> None:
    n, d = 6, 3
    dense = np.arange(n * d, dtype=np.float32).reshape(n, d)
    y, gold = np.array([0, 1, 2, 0, 1, 2]), np.array([True, False, True, True, True, False])
    fams = np.array(["a", "a", "b", "b", "c", "c"])
    rows = AugmentedRows(["v0", "v1", "v2"], np.array([0, 1, 3]), np.array([2, 4, 5]), ["after"] * 3)
    aug = AugmentInputs(rows, np.full((3, d), -1.0, dtype=np.float32))
    fit = np.array([True, True, True, False, True, False])
    texts = [f"t{i}" for i in range(n)]
    off = fitting_rows(TaskSettings(), fit, dense, texts, y, gold, fams, {"augment_passages": aug})
    assert off[1] == ["t0", "t1", "t2", "t4"]
    on = fitting_rows(TaskSettings(augment_passages=1.0), fit, dense, texts, y, gold, fams, {"augment_passages": aug})
    # v0 (base 0, donor 2) and v1 (base 1, donor 4) are in; v2 (base 3 held) is out
    assert on[1] == ["t0", "t1", "t2", "t4", "v0", "v1"]
    assert on[2].tolist() == [0, 1, 2, 1, 0, 1] and on[3].tolist() == [True, False, True, True, True, False]
    assert on[4].tolist() == ["a", "a", "b", "c", "a", "a"] and (on[0][-2:] == -1.0).all()
    with pytest.raises(ValueError, match="no such augmented variants"):
        fitting_rows(TaskSettings(augment_passages=1.0), fit, dense, texts, y, gold, fams, None)
    with pytest.raises(ValueError, match=r"augment_short_passages=0\.5 but no such"):
        fitting_rows(
            TaskSettings(augment_short_passages=0.5), fit, dense, texts, y, gold, fams, {"augment_passages": aug}
        )


def test_reindexed_maps_into_the_subset() -> None:
    rows = AugmentedRows(["v"], np.array([7]), np.array([3]), ["after"])
    aug = AugmentInputs(rows, np.zeros((1, 2), dtype=np.float32)).reindexed(np.array([1, 3, 7, 9]))
    assert (aug.rows.base.tolist(), aug.rows.donor.tolist()) == ([2], [1])
    with pytest.raises(ValueError, match="outside the subset"):
        AugmentInputs(rows, np.zeros((1, 2), dtype=np.float32)).reindexed(np.array([3, 9]))


def test_cross_validation_fits_a_fold_only_on_its_own_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fold's head sees exactly the variants whose base and donor rows it fits on."""
    from models import task_cv

    seen: list[list[str]] = []
    real = task_cv.train_task

    def spy(settings: TaskSettings, dense: np.ndarray, texts: list[str], *rest: object) -> object:
        seen.append([t for t in texts if t.startswith("v")])
        return real(settings, dense, texts, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(task_cv, "train_task", spy)
    rng = np.random.default_rng(0)
    n = 12
    dense = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.arange(n) % 2
    fams = np.array([f"f{i % 3}" for i in range(n)])
    folds = np.arange(n) % 3  # fold j = family f{j}
    rows = AugmentedRows(["v0:f0<f1", "v1:f1<f2", "v2:f2<f0"], np.array([0, 1, 2]), np.array([4, 5, 3]), ["after"] * 3)
    aug = AugmentInputs(rows, rng.normal(size=(3, 4)).astype(np.float32))
    settings = TaskSettings(augment_passages=1.0, lexical=LexicalConfig(n_buckets=64)).override(steps=2)
    texts = [f"t{i}" for i in range(n)]
    cross_validate(settings, dense, texts, y, np.ones(n, bool), fams, folds, ["a", "b"], aug={"augment_passages": aug})
    # fold 0 holds family f0: only v1 (f1 base, f2 donor) may be fitted; fold 1: v2; fold 2: v0
    assert seen == [["v1:f1<f2"], ["v2:f2<f0"], ["v0:f0<f1"]]


def test_short_pool_cuts_only_the_passage_of_allowed_summarization_rows() -> None:
    texts, cats, fams = _data()
    allowed = np.ones(len(texts), dtype=bool)
    allowed[0] = False
    cfg = PassageAugmentConfig(**{**CONFIG.to_json(), "short_max_chars": 120})
    pool = build_short_pool(texts, cats, fams, allowed, cfg)
    assert len(pool) == 9 and (pool.base == pool.donor).all() and allowed[pool.base].all()
    assert {cats[b] for b in pool.base} == {"summarization"}
    for text, b in zip(pool.texts, pool.base, strict=True):
        assert text.startswith("Summarize this news article.\n\nArticle: The council approved")
        assert cfg.short_min_chars // 2 <= len(text) - len("Summarize this news article.\n\nArticle: ") <= 120
        assert len(text) <= len(texts[b]) // 2
    again = build_short_pool(texts, cats, fams, allowed, cfg)
    assert again.texts == pool.texts and (again.base == pool.base).all()

"""Detection quality on the labelled corpus: flow-level precision and recall >= 0.98."""

from __future__ import annotations

from tests.support.corpus import corpus_files, evaluate


def test_corpus_is_large_enough_and_labelled() -> None:
    import yaml

    flows = [f for p in corpus_files() for f in yaml.safe_load(p.read_text())["flows"]]
    assert len(flows) >= 80
    assert sum(1 for f in flows if not f["expect"]) >= 10  # traps with nothing to find


def test_precision_and_recall_at_the_default_confidence() -> None:
    score = evaluate()
    print()
    print(score.table())
    print("\n".join(score.mismatches))
    assert score.precision >= 0.98, score.mismatches
    assert score.recall >= 0.98, score.mismatches

from agent.evaluation.metrics import acc_at_k, coverage_at_k, recall_hits, tagging_report


def test_acc_at_k_uses_the_first_min_k_returned_tags():
    preds = [["a", "x", "b"], ["y"], []]
    truths = [{"a", "b"}, {"z"}, {"q"}]
    assert acc_at_k(preds, truths, 1) == 0.5  # item 1: a ✓; item 2: y ✗; item 3 has no tags
    assert acc_at_k(preds, truths, 2) == (0.5 + 0.0) / 2  # item 1: a ✓ x ✗; item 2: only 1 tag
    assert acc_at_k(preds, truths, 3) == (2 / 3 + 0.0) / 2
    assert coverage_at_k(preds, 1) == 2 / 3 and coverage_at_k(preds, 3) == 1 / 3


def test_recall_hits():
    cands = [["a", "b", "c"], ["a"], ["x"]]
    truths = [{"a", "b"}, {"a", "z"}, {"y"}]
    assert recall_hits(cands, truths) == {"#Right": 1.0, "HR#1": 2 / 3, "HR#2": 1 / 3, "HR#3": 0.0}
    assert set(tagging_report(cands, truths)) == {"Acc@1", "Acc@2", "Acc@3", "Coverage@1", "Coverage@2", "Coverage@3"}

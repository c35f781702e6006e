"""The evaluation code notebook 05 shows: the tutorial's evaluation loop and the confusion matrix with
precision and recall, on cases small enough to check by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from catdog_lib.infer.evaluation import confusion_precision_recall, evaluation_loop


def test_confusion_matrix_precision_and_recall_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 0, 1, 1, 0, 1])
    confusion, precision, recall = confusion_precision_recall(labels, predictions, 3)
    assert confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]  # row: true class, column: predicted
    assert precision.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])  # class 2 never predicted: 0, not a crash
    assert recall.tolist() == pytest.approx([2 / 3, 1 / 2, 0.0])


def test_the_evaluation_loop_runs_in_eval_mode_without_gradients():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    inputs, labels = torch.randn(10, 4), torch.tensor([0, 1] * 5)
    batches = [(inputs[:4], labels[:4]), (inputs[4:], labels[4:])]
    logits, seen = evaluation_loop(net, batches)
    assert not net.training and not logits.requires_grad
    assert torch.equal(seen, labels)
    with torch.no_grad():
        assert torch.allclose(logits, net(inputs))  # dropout off: the same answer as one whole batch
    assert torch.equal(evaluation_loop(net, batches)[0], logits)


@pytest.mark.parametrize("recipe", ["features", "finetune"])
def test_nothing_readable_to_evaluate_is_one_clear_error(recipe, tmp_path, one_thread, monkeypatch):
    """Cached features or whole photos: no readable photo gives the library's one-line error, not a crash."""
    from catdog_lib.errors import CatdogError
    from catdog_lib.infer.evaluation import evaluate, load_model
    from conftest import make_checkpoint

    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path / "cache"))
    loaded = load_model(make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], recipe=recipe), "cpu")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    with pytest.raises(CatdogError, match="no readable images"):
        evaluate(loaded, [(broken, 0)], progress=False)

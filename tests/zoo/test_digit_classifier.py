"""The committed digit classifier reproduces its recorded accuracy, and dit-digits samples are the asked digits."""

from __future__ import annotations

import pytest
import torch

from diffaccel import zoo
from diffaccel.zoo import digit_classifier
from diffaccel.zoo.data import digits_split
from diffaccel.zoo.weights_io import verify_manifest


@pytest.fixture(scope="module")
def classifier():
    return digit_classifier.load_classifier()


def test_classifier_reproduces_manifest_accuracy_on_real_digits(classifier):
    _, _, x_test, y_test = digits_split()
    accuracy = digit_classifier.digit_accuracy(classifier, x_test, y_test)
    recorded = verify_manifest("dit-digits")["metrics"]["classifier_test_accuracy"]
    assert accuracy == pytest.approx(recorded, abs=1e-6)
    assert accuracy > 0.95


def test_classify_accepts_pipeline_outputs(classifier):
    _, _, x_test, y_test = digits_split()
    as_np = x_test[:5].permute(0, 2, 3, 1).numpy()
    assert torch.equal(digit_classifier.classify(classifier, as_np), digit_classifier.classify(classifier, x_test[:5]))
    with pytest.raises(ValueError, match="1x8x8"):
        digit_classifier.classify(classifier, torch.zeros(1, 3, 8, 8))


def test_full_step_samples_are_the_requested_digits(classifier):
    # Conditioning sanity check on 20 samples (2 per digit) at the default 50 steps, not a quality benchmark:
    # a broken label path or null class gives about 10%.
    pipe = zoo.load("dit-digits")
    pipe.set_progress_bar_config(disable=True)
    accuracy = digit_classifier.sample_accuracy(pipe, classifier, samples_per_class=2, seed=0)
    assert accuracy >= 0.8

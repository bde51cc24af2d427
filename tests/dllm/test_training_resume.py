"""A stopped dLLM training resumes where it was: the resumed run follows the uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from diffaccel.dllm import train_recall
from diffaccel.dllm.tasks.recall import RecallTask

TINY = [
    "--eval-count", "2", "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--ff", "32", "--batch-size", "4",
    "--warmup", "2", "--passage-length", "48", "--gen-length", "8", "--n-symbols", "64", "--curriculum-start", "16",
    "--curriculum-window", "2", "--checkpoint-every", "2", "--probe-every", "100", "--steps", "6",
]  # fmt: skip


def stop_during_step_five(argv: list[str], monkeypatch) -> None:
    """Run ``train_recall`` with ``argv`` and interrupt it during step 5, after the checkpoint of step 4."""
    calls, accuracy = [], RecallTask.progress_accuracy

    def stop_at_step_five(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return accuracy(*args)

    with monkeypatch.context() as patch:
        patch.setattr(RecallTask, "progress_accuracy", stop_at_step_five)
        with pytest.raises(KeyboardInterrupt):
            train_recall.main(argv)


def test_resumed_recall_training_follows_the_uninterrupted_run(tmp_path, monkeypatch):
    straight = train_recall.main([*TINY, "--output", str(tmp_path / "straight")])
    stop_during_step_five([*TINY, "--output", str(tmp_path / "stopped")], monkeypatch)
    resumed = train_recall.main([*TINY, "--resume", "--output", str(tmp_path / "stopped")])

    assert resumed["steps_done"] == straight["steps_done"] == 6
    # Same data, learning-rate curve and optimiser state; the float sums may take another order in fresh memory.
    expected, got = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "stopped"))
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5)
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], abs=1e-5)


def test_resuming_with_other_options_is_refused_and_other_threads_are_not(tmp_path, monkeypatch):
    """A checkpoint records the options of its run: resuming with another learning rate or task would silently
    continue a different run, so it fails naming the options; the thread count does not change the run."""
    out = ["--output", str(tmp_path / "run")]
    stop_during_step_five([*TINY, *out], monkeypatch)
    other = [a if a != "48" else "40" for a in TINY]  # --passage-length 40: another task, the same model shapes
    with pytest.raises(ValueError, match=r"--lr: 0\.002 -> 0\.001.*--passage-length: 48 -> 40"):
        train_recall.main([*other, "--lr", "1e-3", "--resume", *out])
    resumed = train_recall.main([*TINY, "--threads", "2", "--resume", *out])
    assert resumed["steps_done"] == 6

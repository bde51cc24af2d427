"""A small CNN trained on the real scikit-learn digits, used to score ``dit-digits`` samples absolutely.

Agreement with the full-step run (PSNR/SSIM) says how much an acceleration changed an image; this classifier says
whether the image is still the digit that was asked for: :func:`sample_accuracy` is the share of generated samples
classified as their requested digit.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from .data import digits_split

logger = logging.getLogger(__name__)

FILENAME = "classifier.safetensors"


class DigitClassifier(nn.Module):
    """Two 3x3 conv layers and an MLP head for 1x8x8 images in [0, 1]; about 40 K parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _shift_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel, so the classifier does not depend on exact digit placement."""
    padded = F.pad(images, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[..., dy : dy + 8, dx : dx + 8]


def train_classifier(seed: int = 0, epochs: int = 40, batch_size: int = 64) -> tuple[DigitClassifier, dict]:
    """Train on the fixed train split of :func:`diffaccel.zoo.data.digits_split`; report held-out accuracy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train, x_test, y_test = digits_split()
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(_shift_augment(x_train[index], generator)), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        test_accuracy = (model(x_test).argmax(-1) == y_test).float().mean().item()
    logger.info("digit classifier: held-out accuracy %.4f on %d real digits", test_accuracy, len(y_test))
    return model, {
        "classifier_test_accuracy": test_accuracy,
        "classifier_test_size": len(y_test),
        "classifier_epochs": epochs,
    }


def train_and_save(path: str | os.PathLike, seed: int = 0) -> dict:
    from .weights_io import save_state

    model, summary = train_classifier(seed=seed)
    save_state(path, {"classifier": model})
    return summary


def load_classifier(path: str | os.PathLike | None = None) -> DigitClassifier:
    """The committed classifier (``weights/dit-digits/classifier.safetensors``) unless ``path`` is given."""
    from .weights_io import load_state_into, weights_dir

    model = DigitClassifier()
    load_state_into(path or weights_dir("dit-digits") / FILENAME, {"classifier": model})
    return model.eval()


@torch.no_grad()
def classify(classifier: DigitClassifier, images) -> torch.Tensor:
    """Predicted digits for images as ``(B, 8, 8, 1)`` numpy / ``(B, 1, 8, 8)`` tensor in [0, 1] or PIL list."""
    import numpy as np

    if isinstance(images, list):
        images = np.stack([np.asarray(image, dtype=np.float32) / 255.0 for image in images])[..., None]
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    images = images.float().to(next(classifier.parameters()).device)
    if images.shape[1:] != (1, 8, 8):
        raise ValueError(f"digit classifier expects 1x8x8 images, got {tuple(images.shape[1:])}")
    return classifier(images).argmax(-1).cpu()


def digit_accuracy(classifier: DigitClassifier, images, requested_labels) -> float:
    """Share of ``images`` classified as the digit in ``requested_labels`` (same order)."""
    requested = torch.as_tensor(requested_labels).reshape(-1).cpu()
    return (classify(classifier, images) == requested).float().mean().item()


def sample_accuracy(
    pipe, classifier: DigitClassifier, samples_per_class: int = 20, seed: int = 0, **call_kwargs
) -> float:
    """Generate ``samples_per_class`` digits of each class with ``pipe`` and return the classifier accuracy."""
    labels = torch.arange(pipe.num_classes).repeat(samples_per_class)
    generator = torch.Generator("cpu").manual_seed(seed)
    images = pipe(class_labels=labels, generator=generator, output_type="np", **call_kwargs).images
    return digit_accuracy(classifier, images, labels)

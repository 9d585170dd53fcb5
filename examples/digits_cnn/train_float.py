"""Step 1 (outside imac): the user's data and float network.

Writes scikit-learn's handwritten digits as NumPy arrays with a data spec beside them
(``digits.yaml``: 80/20 stratified split, pixels 0..16 scaled to 0..1), trains ``DigitsNet`` in
plain PyTorch on the training split and saves its ``state_dict``.

    python train_float.py OUT_DIR
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from digits_net import DigitsNet
from sklearn.datasets import load_digits

TEST_FRACTION = 0.2
SEED = 0


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same stratified split imac's data spec makes (imac.nn.userdata.holdout_indices)."""
    from imac.nn.userdata import holdout_indices

    return holdout_indices(labels, TEST_FRACTION, SEED)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images = digits.images.astype(np.float32)  # (1797, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    np.save(out / "digits_images.npy", images)
    np.save(out / "digits_labels.npy", labels)
    (out / "digits.yaml").write_text(
        "# scikit-learn's handwritten digits (8x8, 0..16), brought in as NumPy arrays\n"
        "name: sklearn-digits\nformat: npy\n"
        "train: {images: digits_images.npy, labels: digits_labels.npy}\n"
        f"split: {{test_fraction: {TEST_FRACTION}, seed: {SEED}}}\n"
        "input_shape: [8, 8]\nscale: 0.0625\n")

    train_idx, test_idx = split_indices(labels)
    x = torch.from_numpy(images / 16.0).unsqueeze(1)  # what the data spec's scale gives imac
    y = torch.from_numpy(labels)
    torch.manual_seed(SEED)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    for _epoch in range(30):
        net.train()
        perm = torch.from_numpy(train_idx)[torch.randperm(len(train_idx))]
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(x[test_idx]).argmax(1) == y[test_idx]).float().mean())
    torch.save(net.state_dict(), out / "digits_net_state.pt")
    summary = {"float_test_accuracy": acc, "train_seconds": round(time.perf_counter() - t0, 1),
               "train_images": len(train_idx), "test_images": len(test_idx)}
    (out / "float_training.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "digits-run"))

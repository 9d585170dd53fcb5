"""A user's small CNN for scikit-learn's 8x8 handwritten digits: plain PyTorch, nothing of imac."""

from torch import nn


class DigitsNet(nn.Module):
    """conv 1->16 3x3, ReLU, conv 16->32 3x3, ReLU, max pool 2 -> 32x4x4 = 512 features, then the FC
    head 512 -> 64 -> 10 (the part imac puts on IMAC)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))

"""The batch every method test explains: three non-square noise images and the model's classes."""

import pytest
import torch


@pytest.fixture
def batch(tiny_model):
    torch.manual_seed(3)
    x = torch.randn(3, 3, 32, 40)  # not square: catches a swapped height and width
    with torch.inference_mode():
        targets = tiny_model.backbone(x).argmax(dim=1)
    return x, targets.clone()

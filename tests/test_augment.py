"""cnnbook.augment: hand-written Cutout / Mixup / CutMix vs torchvision.transforms.v2."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cnnbook.augment import Cutout, cutmix, cutmix_box, cutout, mixup, to_soft_labels


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(6, 3, 32, 32, generator=gen), torch.randint(10, (6,), generator=gen)


def test_cutout_inside_equals_torchvision_erase() -> None:
    images, _ = _batch()
    out = cutout(images, 8, centers=torch.tensor([[16, 16]] * 6))
    torch.testing.assert_close(out, TF.erase(images, 12, 12, 8, 8, torch.tensor(0.0)))
    assert int((out == 0).all(dim=1).sum()) == 6 * 64


def test_cutout_is_clipped_at_the_border_and_copies() -> None:
    images, _ = _batch()
    out = cutout(images, 8, centers=torch.tensor([[0, 31]] * 6))
    assert int((out[0] == 0).all(dim=0).sum()) == 4 * 5  # rows 0-3, columns 27-31 survive
    torch.testing.assert_close(out, TF.erase(images, 0, 27, 4, 5, torch.tensor(0.0)))
    assert not torch.equal(out, images)  # the input was not modified in place


def test_cutout_transform_and_errors() -> None:
    img = torch.rand(3, 32, 32)
    torch.manual_seed(0)
    out = v2.Compose([v2.RandomHorizontalFlip(), Cutout(10)])(img)
    # at least the quarter that stays inside at a corner, at most the whole square
    assert out.shape == img.shape
    assert 25 <= int((out == 0).all(dim=0).sum()) <= 100
    assert torch.equal(Cutout(10, p=0.0)(img), img)
    with pytest.raises(ValueError, match="probability"):
        Cutout(10, p=2.0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        cutout(torch.rand(32, 32), 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixup_equals_torchvision(seed: int) -> None:
    images, labels = _batch(seed)
    torch.manual_seed(seed)
    ref_x, ref_y = v2.MixUp(alpha=0.4, num_classes=10)(images, labels)
    torch.manual_seed(seed)  # draw lam exactly as torchvision does
    beta = torch.distributions.Beta(torch.tensor([0.4]), torch.tensor([0.4]))
    lam = float(beta.sample(()))
    x, y = mixup(images, labels, lam, num_classes=10)
    torch.testing.assert_close(x, ref_x)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close(y.sum(1), torch.ones(6))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cutmix_equals_torchvision(seed: int) -> None:
    images, labels = _batch(seed)
    torch.manual_seed(seed)
    ref_x, ref_y = v2.CutMix(alpha=1.0, num_classes=10)(images, labels)
    torch.manual_seed(seed)  # torchvision draws lam, then the column, then the row
    lam = float(torch.distributions.Beta(torch.tensor([1.0]), torch.tensor([1.0])).sample(()))
    cx, cy = int(torch.randint(32, (1,))), int(torch.randint(32, (1,)))
    box = cutmix_box(lam, 32, 32, (cy, cx))
    x, y, lam_used = cutmix(images, labels, box, num_classes=10)
    torch.testing.assert_close(x, ref_x)
    torch.testing.assert_close(y, ref_y)
    x1, y1, x2, y2 = box
    assert lam_used == pytest.approx(1 - (x2 - x1) * (y2 - y1) / 32**2)


def test_explicit_partner_and_soft_labels() -> None:
    images, labels = _batch()
    partner = torch.tensor([5, 4, 3, 2, 1, 0])
    x, y = mixup(images, labels, 0.75, num_classes=10, partner=partner)
    torch.testing.assert_close(x[0], 0.75 * images[0] + 0.25 * images[5])
    onehot = to_soft_labels(labels, 10)
    torch.testing.assert_close(y[1], 0.75 * onehot[1] + 0.25 * onehot[4])
    x2, y2, lam = cutmix(images, onehot, (0, 0, 16, 32), partner=partner)
    assert lam == 0.5
    torch.testing.assert_close(x2[0, :, :, :16], images[5, :, :, :16])
    torch.testing.assert_close(x2[0, :, :, 16:], images[0, :, :, 16:])
    with pytest.raises(ValueError, match="num_classes"):
        to_soft_labels(labels, None)
    with pytest.raises(ValueError, match="lam"):
        mixup(images, labels, 1.5, num_classes=10)
    with pytest.raises(ValueError, match="box"):
        cutmix(images, labels, (0, 0, 40, 8), num_classes=10)

"""cnnbook.models.FastCIFARNet: shapes, and the whitening stem really whitens."""

from __future__ import annotations

import pytest
import torch

from cnnbook.models import FastCIFARNet


def test_shapes_and_parameters() -> None:
    model = FastCIFARNet(num_classes=7, widths=(8, 16, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    convs = 24 * 8 * 9 + 8 * 8 * 9 + 8 * 16 * 9 + 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9
    bns = 2 * 2 * (8 + 16 + 32)
    stem = 24 * 3 * 4 + 24
    assert sum(p.numel() for p in model.parameters()) == convs + bns + stem + 32 * 7
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="three positive"):
        FastCIFARNet(widths=(8, 16))


def test_whitening_stem_decorrelates_patches() -> None:
    g = torch.Generator().manual_seed(0)
    # correlated channels and neighbouring pixels, like natural images
    base = torch.randn(64, 1, 17, 17, generator=g).cumsum(-1).cumsum(-2) / 8
    images = torch.cat(
        [
            base,
            0.8 * base + 0.2 * torch.randn(64, 1, 17, 17, generator=g),
            torch.randn(64, 1, 17, 17, generator=g),
        ],
        1,
    )[..., :16, :16]
    model = FastCIFARNet(widths=(8, 8, 8))
    eigvals = model.init_whitening(images, eps=1e-6)
    assert torch.all(eigvals[:-1] >= eigvals[1:])  # descending
    out = model.stem(images)  # (N, 24, 15, 15): 12 whitened directions and their negatives
    assert out.shape == (64, 24, 15, 15)
    feats = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    assert torch.allclose(torch.cov(feats.T), torch.eye(12), atol=1e-3)
    assert torch.allclose(model.stem.weight[12:], -model.stem.weight[:12])
    assert torch.allclose(feats.mean(0), torch.zeros(12), atol=1e-4)  # centred by the bias
    assert not model.stem.weight.requires_grad


def test_flip_tta_averages_the_mirror_in_eval_mode_only() -> None:
    torch.manual_seed(0)
    plain = FastCIFARNet(widths=(8, 8, 8)).eval()
    tta = FastCIFARNet(widths=(8, 8, 8), flip_tta=True).eval()
    tta.load_state_dict(plain.state_dict())  # same weights: flip_tta adds no parameters
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = (plain(x) + plain(x.flip(3))) / 2
        torch.testing.assert_close(tta(x), expected)
        mirrored = tta(x.flip(3))
    torch.testing.assert_close(mirrored, tta(x))  # a flip-invariant prediction
    tta.train()
    plain.train()
    torch.testing.assert_close(tta(x), plain(x))  # training sees single views

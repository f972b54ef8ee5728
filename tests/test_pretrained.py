"""cnnbook.pretrained: backbone choice (offline-safe), preprocessing, freezing, LR groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cnnbook import modules, pretrained
from cnnbook.images import load_photo

CATS = {"tabby", "tiger cat", "Egyptian cat"}
RESNET18_PARAMS = 11_689_512  # torchvision's published count for resnet18


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch.hub cache and no network: nothing may be downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "_download_reachable", lambda *a, **k: False)
    return tmp_path


@pytest.fixture
def cached_resnet(offline: Path) -> dict[str, torch.Tensor]:
    """Put (random) ResNet-18 weights where torch.hub caches the ImageNet ones."""
    path = pretrained.resnet18_weights_file()
    assert str(path).startswith(str(offline))
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    return state


@pytest.fixture(scope="module")
def lite0() -> pretrained.Pretrained:
    return pretrained.load_pretrained("efficientnet_lite0", verbose=False)


def test_lite0_recognises_real_photos(lite0: pretrained.Pretrained) -> None:
    assert len(lite0.categories) == 1000
    assert lite0.categories[281] == "tabby"
    photos = torch.stack([load_photo("chelsea", size=256), load_photo("coffee", size=256)])
    x = lite0.preprocess(photos)
    assert x.shape == (2, 3, 224, 224)
    with torch.no_grad():
        top5 = lite0.model(x).topk(5, dim=1).indices
    cat_top5 = {lite0.categories[i] for i in top5[0].tolist()}
    assert lite0.categories[int(top5[0, 0])] in CATS, cat_top5
    assert lite0.categories[int(top5[1, 0])] in {"espresso", "cup", "coffee mug"}


def test_normalize_matches_preprocess_statistics(lite0: pretrained.Pretrained) -> None:
    x = torch.rand(2, 3, 8, 8)
    expected = (255 * x - 127) / 128  # the Lite models' Inception-style scaling
    torch.testing.assert_close(lite0.normalize(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lite0.denormalize(lite0.normalize(x)), x, atol=1e-6, rtol=0)
    small = lite0.preprocess(load_photo("coffee"), size=96)
    assert small.shape == (1, 3, 96, 96)
    assert float(lite0.denormalize(small).min()) >= 0.0


def test_resnet18_offline_is_a_clear_error(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not try to download when the cache is empty and offline")

    monkeypatch.setattr(torchvision.models, "resnet18", no_download)
    with pytest.raises(FileNotFoundError, match="efficientnet_lite0") as info:
        pretrained.load_pretrained("resnet18")
    assert str(pretrained.resnet18_weights_file()) in str(info.value)


def test_resnet18_failed_download_is_a_clear_error(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "_download_reachable", lambda *a, **k: True)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(torchvision.models, "resnet18", fail)
    with pytest.raises(FileNotFoundError, match="connection reset"):
        pretrained.load_pretrained("resnet18")


def test_auto_offline_uses_lite0_and_says_why(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = pretrained.load_pretrained("auto")
    assert bundle.name == "efficientnet_lite0"
    printed = capsys.readouterr().out
    assert "efficientnet_lite0" in printed
    assert "not cached" in printed
    assert str(pretrained.resnet18_weights_file()) in printed


def test_auto_prefers_cached_resnet18(
    cached_resnet: dict[str, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = pretrained.load_pretrained("auto")
    assert bundle.name == "resnet18"
    assert "cached" in capsys.readouterr().out
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(value, cached_resnet[key]), key
    photo = load_photo("chelsea")
    reference = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()(photo)
    torch.testing.assert_close(bundle.preprocess(photo)[0], reference)
    smaller = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms(crop_size=160, resize_size=183)(
        photo
    )
    torch.testing.assert_close(bundle.preprocess(photo[None], size=160)[0], smaller)
    assert bundle.categories == list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_unknown_backbone_and_bad_input(lite0: pretrained.Pretrained) -> None:
    with pytest.raises(ValueError, match="resnet18"):
        pretrained.load_pretrained("vgg16")
    with pytest.raises(ValueError, match="float"):
        lite0.preprocess(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="neither a stage"):
        lite0.freeze("layer9")


@pytest.mark.parametrize("fixture", ["cached_resnet", "lite0"])
def test_stages_partition_the_backbone(fixture: str, request: pytest.FixtureRequest) -> None:
    if fixture == "cached_resnet":
        request.getfixturevalue(fixture)
        bundle = pretrained.load_pretrained("resnet18", verbose=False)
    else:
        bundle = request.getfixturevalue(fixture)
    seen: list[int] = []
    for stage in [*bundle.stages, "head"]:
        seen += [id(p) for p in pretrained._params_under(bundle.model, bundle.resolve([stage]))]
    assert len(seen) == len(set(seen)), "a parameter belongs to two stages"
    assert set(seen) == {id(p) for p in bundle.model.parameters()}, "a parameter has no stage"
    assert isinstance(bundle.model.get_submodule(bundle.head), nn.Linear)
    assert bundle.model.get_submodule(bundle.cam_layer) is not None


def test_feature_extraction_counts_match_the_book(cached_resnet: dict[str, torch.Tensor]) -> None:
    bundle = pretrained.load_pretrained("resnet18", verbose=False)
    assert pretrained.trainable_report(bundle.model).total == RESNET18_PARAMS
    bundle.freeze()
    head = bundle.replace_head(5)
    assert bundle.model.fc is head
    assert head.weight.requires_grad
    report = pretrained.trainable_report(bundle.model)
    assert (report.trainable, report.total) == (512 * 5 + 5, RESNET18_PARAMS - 513_000 + 2565)
    assert dict((n, (t, a)) for n, t, a in report.rows)["fc"] == (2565, 2565)
    assert "0.0% trainable" in str(report)


def test_param_groups_cover_trainable_params_once(cached_resnet: dict[str, torch.Tensor]) -> None:
    bundle = pretrained.load_pretrained("resnet18", verbose=False)
    bundle.replace_head(5)
    bundle.train_only("layer3", "layer4", "head")
    groups = bundle.param_groups({"layer3": 1e-5, "layer4": 1e-4, "head": 1e-3})
    assert [(g["name"], g["lr"]) for g in groups] == [("layer3", 1e-5), ("layer4", 1e-4), ("head", 1e-3)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in bundle.model.parameters() if p.requires_grad}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in bundle.model.layer4.parameters()}
    with pytest.raises(ValueError, match="no learning rate"):
        bundle.param_groups({"layer4": 1e-4, "head": 1e-3})
    # A more specific module name wins over the stage that contains it.
    fine = pretrained.param_groups(
        bundle.model, {"layer3": 1e-5, "layer4": 1e-4, "layer4.1": 1e-6, "fc": 1e-3}
    )
    by_name = {g["name"]: {id(p) for p in g["params"]} for g in fine}
    assert by_name["layer4.1"] == {id(p) for p in bundle.model.layer4[1].parameters()}
    assert not by_name["layer4"] & by_name["layer4.1"]


def test_progressive_unfreezing_trains_only_its_stages(cached_resnet: dict[str, torch.Tensor]) -> None:
    bundle = pretrained.load_pretrained("resnet18", verbose=False)
    bundle.replace_head(3)
    phases = pretrained.progressive_schedule(list(bundle.stages), lr=1e-3, epochs=(2, 1, 1))
    assert [p.name for p in phases] == ["head only", "+ layer4", "everything"]
    assert phases[1].lrs == {"layer4": 1e-4, "head": 1e-3}  # the book's stage 2
    assert phases[2].lrs["stem"] == pytest.approx(1e-5)
    assert phases[0].epochs == 2
    expected_trainable = [
        sum(p.numel() for p in bundle.model.fc.parameters()),
        sum(p.numel() for m in (bundle.model.layer4, bundle.model.fc) for p in m.parameters()),
        sum(p.numel() for p in bundle.model.parameters()),
    ]
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    for phase, n_trainable in zip(phases, expected_trainable, strict=True):
        groups = bundle.apply_phase(phase)
        assert pretrained.trainable_report(bundle.model).trainable == n_trainable
        assert {g["name"]: g["lr"] for g in groups} == phase.lrs
        before = {n: p.detach().clone() for n, p in bundle.model.named_parameters()}
        opt = torch.optim.SGD(groups, lr=0.0)
        bundle.model.train()
        nn.functional.cross_entropy(bundle.model(x), y).backward()
        opt.step()
        for name, p in bundle.model.named_parameters():
            changed = not torch.equal(p.detach(), before[name])
            if not p.requires_grad:
                assert not changed, f"frozen {name} changed in phase {phase.name!r}"
        assert not torch.equal(bundle.model.fc.weight.detach(), before["fc.weight"])
        bundle.model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="3"):
        pretrained.progressive_schedule(["a"], epochs=(1, 1))


def test_frozen_batchnorm_stays_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)
    )
    with torch.no_grad():  # give the first BN non-trivial running statistics
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(8, 3, 10, 10)
    expected_first = model[1](model[0](x)).detach()
    frozen_stats = model[1].running_mean.clone()
    pretrained.freeze(model, ["0", "1"])
    guard = modules.FrozenBatchNorm(model)
    model.train()
    captured = {}
    handle = model[1].register_forward_hook(lambda m, i, o: captured.update(out=o.detach()))
    model(x)
    handle.remove()
    torch.testing.assert_close(captured["out"], expected_first)  # running stats, as in eval
    assert torch.equal(model[1].running_mean, frozen_stats)
    assert model[4].training
    assert not torch.equal(model[4].running_mean, torch.zeros(4))
    pretrained.unfreeze(model, ["1"])  # once trainable, it trains normally again
    model.train()
    model(x)
    assert model[1].training
    assert not torch.equal(model[1].running_mean, frozen_stats)
    guard.remove()
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_resized_loader_and_extract_features(lite0: pretrained.Pretrained) -> None:
    from cnnbook.arrays import ImageArrays
    from cnnbook.loaders import GPUBatchLoader, ResizedLoader

    gen = torch.Generator().manual_seed(0)
    arrays = ImageArrays(
        torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=gen),
        torch.arange(6) % 3,
        ["a", "b", "c"],
    )
    inner = GPUBatchLoader(arrays, batch_size=4, train=False, device="cpu", mean=lite0.mean, std=lite0.std)
    loader = ResizedLoader(inner, 48)
    assert len(loader) == 2
    assert loader.classes == ["a", "b", "c"]
    loader.set_epoch(3)
    assert inner.epoch == 3
    batches = list(loader)
    assert batches[0][0].shape == (4, 3, 48, 48)
    assert batches[1][0].shape == (2, 3, 48, 48)
    expected = lite0.normalize(
        nn.functional.interpolate(
            arrays.images[:4].float() / 255, size=(48, 48), mode="bilinear", align_corners=False
        )
    )
    torch.testing.assert_close(batches[0][0], expected, atol=1e-5, rtol=1e-5)

    lite0.model.train()
    feats, labels = pretrained.extract_features(lite0, loader)
    assert feats.shape == (6, 1280)
    assert torch.equal(labels, arrays.labels)
    assert isinstance(lite0.model.classifier, nn.Linear)
    assert lite0.model.training
    lite0.model.eval()
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        direct = lite0.model.pool(lite0.model.features(x)).flatten(1)
    torch.testing.assert_close(feats, direct, atol=1e-4, rtol=1e-4)


def test_random_init_has_the_same_architecture(lite0: pretrained.Pretrained) -> None:
    scratch = pretrained.random_init("efficientnet_lite0", num_classes=10)
    shapes = {k: v.shape for k, v in scratch.state_dict().items() if "classifier" not in k}
    assert shapes == {k: v.shape for k, v in lite0.model.state_dict().items() if "classifier" not in k}
    assert scratch.classifier.out_features == 10
    assert pretrained.random_init("resnet18", 7).fc.out_features == 7


def test_backbone_names_have_one_home_with_a_clear_error() -> None:
    """random_init and load_pretrained read the names from zoo.IMAGENET_BACKBONES."""
    from torchvision.models import resnet18

    from cnnbook import zoo

    assert set(zoo.IMAGENET_BACKBONES) == {"resnet18", "efficientnet_lite0"}
    # the same network torchvision builds for the pretrained weights (names and shapes)
    ours = {k: v.shape for k, v in pretrained.random_init("ResNet18", 5).state_dict().items()}
    assert ours == {k: v.shape for k, v in resnet18(num_classes=5).state_dict().items()}
    for call in (
        lambda: pretrained.random_init("resnet-18", 10),
        lambda: pretrained.load_pretrained("resnet-18"),
    ):
        with pytest.raises(ValueError, match="Unknown backbone 'resnet-18'") as info:
            call()
        assert "'efficientnet_lite0'" in str(info.value)
        assert "Did you mean 'resnet18'?" in str(info.value)
    with pytest.raises(ValueError, match="'auto'"):
        pretrained.load_pretrained("vgg16")


def test_trainable_report_counts_shared_parameters_once() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    model[3].requires_grad_(False)
    report = pretrained.trainable_report(model)
    assert (report.trainable, report.total) == (20, 30)
    assert ("0", 20, 20) in report.rows
    assert ("3", 0, 10) in report.rows


def test_resnet_stage_map_matches_torchvision_names() -> None:
    from torchvision.models import resnet18

    top = {name for name, _ in resnet18(weights=None).named_children()}
    covered = [m for modules in pretrained.RESNET_STAGES.values() for m in modules]
    assert set(covered) == top - {"relu", "maxpool", "avgpool", "fc"}
    assert list(pretrained.RESNET_STAGES) == ["stem", "layer1", "layer2", "layer3", "layer4"]

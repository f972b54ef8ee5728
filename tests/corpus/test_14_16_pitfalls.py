"""Wrong-answer corpus for the section 14.16 exercises (see corpus_tools)."""

from __future__ import annotations

import numpy as np
import torch
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import pitfalls as checks

# ------------------------------------------------------------------ Exercise 1: flatten size


def flatten_reference(features, input_shape):
    modes = [(m, m.training) for m in features.modules()]
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    finally:
        for m, was in modes:
            m.train(was)
    return out[0].numel()


def flatten_copy_of_model(features, input_shape):
    """Correct variant: a deep copy in eval mode, returns a tensor-derived int."""
    import copy

    probe = copy.deepcopy(features).eval()
    with torch.inference_mode():
        return int(torch.tensor(probe(torch.zeros(2, *input_shape)).shape[1:]).prod())


def flatten_with_batch(features, input_shape):
    return flatten_reference(features, (input_shape[0], *input_shape[1:])) * 2


def flatten_channels_only(features, input_shape):
    modes = [(m, m.training) for m in features.modules()]
    features.eval()
    with torch.no_grad():
        out = features(torch.zeros(1, *input_shape))
    for m, was in modes:
        m.train(was)
    return out.shape[1]


def flatten_input_size(features, input_shape):
    c, h, w = input_shape
    return c * h * w


def flatten_in_train_mode(features, input_shape):
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape))[0].numel()


def flatten_leaves_eval_mode(features, input_shape):
    features.eval()
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape))[0].numel()


def flatten_grad_off_globally(features, input_shape):
    torch.set_grad_enabled(False)
    return flatten_reference(features, input_shape)


def flatten_hard_coded_quarter(features, input_shape):
    c, h, w = input_shape
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels * (h // 4) * (w // 4)


def flatten_as_float(features, input_shape):
    return float(flatten_reference(features, input_shape))


def flatten_as_float_tensor(features, input_shape):
    return torch.tensor(float(flatten_reference(features, input_shape)))


def flatten_restores_top_module_only(features, input_shape):
    was_training = features.training
    features.eval()
    with torch.no_grad():
        n = features(torch.zeros(1, *input_shape))[0].numel()
    features.train(was_training)
    return n


def flatten_int_tensor_inference_mode(features, input_shape):
    """Correct variant: inference_mode, a 0-d integer tensor from math on the shape."""
    modes = {m: m.training for m in features.modules()}
    features.eval()
    with torch.inference_mode():
        out = features(torch.zeros(1, *input_shape))
    for m, mode in modes.items():
        m.train(mode)
    return torch.tensor(out.shape[1:]).prod()


def test_flatten_accepts_the_reference_and_variants() -> None:
    accepted(checks.check_flatten_size, flatten_reference)
    accepted(checks.check_flatten_size, flatten_copy_of_model)
    accepted(checks.check_flatten_size, flatten_int_tensor_inference_mode)


def flatten_records_gradients(features, input_shape):
    """Eval mode and modes restored, but the dummy pass runs with autograd recording."""
    modes = [(m, m.training) for m in features.modules()]
    features.eval()
    try:
        out = features(torch.zeros(1, *input_shape))
    finally:
        for m, was in modes:
            m.train(was)
    return out[0].numel()


def test_flatten_rejects_recorded_gradients() -> None:
    rejected(
        checks.check_flatten_size,
        flatten_records_gradients,
        hint="recorded gradients",
        requirement="no gradient recorded",
    )


def test_checks_leave_the_callers_global_rng_alone() -> None:
    for check, answer in [
        (checks.check_flatten_size, flatten_reference),
        (checks.check_freeze_batchnorm, lambda model: model),
    ]:
        torch.manual_seed(1234)
        before = torch.random.get_rng_state()
        check(answer, seed=3, raise_on_fail=False)
        assert torch.equal(torch.random.get_rng_state(), before), check.__name__


def test_flatten_rejects_known_mistakes() -> None:
    c = checks.check_flatten_size
    rejected(c, flatten_with_batch, hint="batch dimension")
    rejected(c, flatten_channels_only, hint="channel count only")
    rejected(c, flatten_input_size, hint="size of the INPUT")
    rejected(c, flatten_in_train_mode, hint="running statistics")
    rejected(c, flatten_leaves_eval_mode, hint="train/eval mode changed")
    rejected(c, flatten_grad_off_globally, hint="gradients were left off globally")
    rejected(c, flatten_hard_coded_quarter, hint="expected")
    rejected(c, flatten_as_float, hint="needs an int")
    rejected(c, flatten_as_float_tensor, hint="needs an int")
    rejected(c, flatten_restores_top_module_only, hint="woke the batch norm")


# ------------------------------------------------------------------ Exercise 2: frozen batch norm


def freeze_reference(model):
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for p in module.parameters():
                p.requires_grad = False
    return model


def freeze_by_type_tuple(model):
    """Correct variant: an explicit tuple of the four kinds, requires_grad_ on the module."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)):
            module.train(False)
            module.requires_grad_(False)
    return model


def freeze_forgets_sync_batchnorm(model):
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            module.eval()
            module.requires_grad_(False)
    return model


def freeze_forgets_batchnorm3d(model):
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)):
            module.eval()
            module.requires_grad_(False)
    return model


def freeze_with_cnnbook(model):
    """Correct variant: the package's mechanism (the guard is dropped here)."""
    from cnnbook.modules import freeze_batchnorm

    freeze_batchnorm(model).remove()
    return model


def freeze_children_only(model):
    for module in model.children():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.requires_grad_(False)
    return model


def freeze_batchnorm2d_only(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
            module.requires_grad_(False)
    return model


def freeze_whole_model(model):
    model.eval()
    return freeze_reference(model)


def freeze_grads_only(model):
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.requires_grad_(False)
    return model


def freeze_eval_only(model):
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


def freeze_forgets_return(model):
    freeze_reference(model)


def freeze_unfreezes_the_rest(model):
    for p in model.parameters():
        p.requires_grad = True
    return freeze_reference(model)


def freeze_with_cnnbook_keeping_the_guard(model):
    """Correct variant: the package's forward pre-hook stays, keeping the layers frozen."""
    from cnnbook.modules import freeze_batchnorm

    freeze_batchnorm(model)
    return model


def freeze_with_own_pre_hook(model):
    """Correct variant: freezes, and a pre-hook puts each layer back in eval mode on every call."""
    freeze_reference(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_pre_hook(lambda m, _inputs: m.eval() and None)
    return model


def freeze_zero_grad(model):
    """Clears the gradients "so the frozen layers start clean": the caller's ones are lost."""
    model.zero_grad()
    return freeze_reference(model)


def freeze_grad_to_none(model):
    """Drops the gradients of the frozen layers as well."""
    freeze_reference(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for p in module.parameters():
                p.grad = None
    return model


def freeze_resets_statistics(model):
    """Resets the running statistics while freezing: the pretrained ones are gone."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return freeze_reference(model)


def freeze_no_grad_left_off(model):
    """Switches gradients off globally and never back on."""
    torch.set_grad_enabled(False)
    return freeze_reference(model)


def freeze_momentum_zero_in_train_mode(model):
    """Momentum 0 stops the running statistics from moving, but training mode still normalises
    with each batch's own statistics: the layer is not frozen."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
            module.requires_grad_(False)
    return model


def test_freeze_accepts_the_reference_and_variants() -> None:
    accepted(checks.check_freeze_batchnorm, freeze_reference)
    accepted(checks.check_freeze_batchnorm, freeze_by_type_tuple)
    accepted(checks.check_freeze_batchnorm, freeze_with_cnnbook)
    accepted(checks.check_freeze_batchnorm, freeze_with_cnnbook_keeping_the_guard)
    accepted(checks.check_freeze_batchnorm, freeze_with_own_pre_hook)


def test_freeze_leaves_the_callers_state_alone() -> None:
    c = checks.check_freeze_batchnorm
    for wrong, hint in [
        (freeze_zero_grad, "wiped the gradients the caller had accumulated"),
        (freeze_grad_to_none, "wiped the gradients the caller had accumulated on `1.weight`"),
        (freeze_resets_statistics, "changed the model's weights or buffers \\(`1.running_mean`"),
        (freeze_no_grad_left_off, "left off globally"),
    ]:
        rejected(c, wrong, hint=hint, requirement="every batch-norm layer of every kind")
    rejected(c, freeze_momentum_zero_in_train_mode, hint="still in training mode")


def test_freeze_rejects_known_mistakes() -> None:
    c = checks.check_freeze_batchnorm
    rejected(c, freeze_children_only, hint="model.children\\(\\)` lists only the top level")
    rejected(c, freeze_batchnorm2d_only, hint="BatchNorm1d")
    rejected(c, freeze_forgets_sync_batchnorm, hint="SyncBatchNorm.*every kind")
    rejected(c, freeze_forgets_batchnorm3d, hint="BatchNorm3d.*every kind")
    rejected(c, freeze_whole_model, hint="whole model")
    rejected(c, freeze_grads_only, hint="still in training mode")
    rejected(c, freeze_eval_only, hint="still require gradients")
    rejected(c, freeze_forgets_return, hint="returned None")
    rejected(c, freeze_unfreezes_the_rest, hint="not batch norm")


# ------------------------------------------------------------------ Exercise 3: class weights


def weights_reference(labels, num_classes):
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = len(labels) / (num_classes * counts)
    weights[counts == 0] = 0.0
    return weights


def weights_numpy_float64(labels, num_classes):
    """Correct variant: NumPy, float64, np.divide with a where mask."""
    counts = np.bincount(labels.numpy(), minlength=num_classes).astype(np.float64)
    out = np.zeros(num_classes)
    np.divide(len(labels), num_classes * counts, out=out, where=counts > 0)
    return torch.from_numpy(out)


def weights_without_minlength(labels, num_classes):
    counts = torch.bincount(labels).float()
    return len(labels) / (num_classes * counts)


def weights_infinite_for_absent(labels, num_classes):
    counts = torch.bincount(labels, minlength=num_classes).float()
    return len(labels) / (num_classes * counts)


def weights_present_classes_as_k(labels, num_classes):
    counts = torch.bincount(labels, minlength=num_classes).float()
    k = int((counts > 0).sum())
    return torch.where(counts > 0, len(labels) / (k * counts.clamp(min=1)), torch.zeros_like(counts))


def weights_frequencies(labels, num_classes):
    return torch.bincount(labels, minlength=num_classes).float() / len(labels)


def weights_inverse_counts(labels, num_classes):
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, 1 / counts.clamp(min=1), torch.zeros_like(counts))


def weights_sum_to_one(labels, num_classes):
    w = weights_reference(labels, num_classes)
    return w / w.sum()


def weights_from_cnnbook(labels, num_classes):
    from cnnbook.train import balanced_class_weights

    return balanced_class_weights(labels, num_classes)


def test_weights_accept_the_reference_and_variants() -> None:
    accepted(checks.check_class_weights, weights_reference)
    accepted(checks.check_class_weights, weights_numpy_float64)


def test_weights_reject_known_mistakes() -> None:
    c = checks.check_class_weights
    rejected(c, weights_without_minlength, hint="without `minlength=num_classes`")
    rejected(c, weights_infinite_for_absent, hint="weight 0")
    rejected(c, weights_present_classes_as_k, hint="K is `num_classes`")
    rejected(c, weights_frequencies, hint="LARGER for rare classes")
    rejected(c, weights_inverse_counts, hint="wrong scale")
    rejected(c, weights_from_cnnbook, hint="balanced_class_weights.*compute the weights yourself")
    rejected(c, weights_sum_to_one, hint="sum to 1")

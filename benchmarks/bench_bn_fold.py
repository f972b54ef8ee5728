"""Inference latency of EfficientNet-Lite0 before and after folding batch norm into the
convolutions (14.11). Also prints the largest logit change the folding causes.

Run:  python benchmarks/bench_bn_fold.py [--threads N] [--batch B ...]
"""

from __future__ import annotations

import argparse

import torch

from cnnbook.models.efficientnet import efficientnet_lite0
from cnnbook.norm import fold_batchnorm
from cnnbook.timing import compare_forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = efficientnet_lite0(pretrained=True)
    folded = fold_batchnorm(model)
    print(
        f"torch {torch.__version__}, {args.threads} threads, 224x224, "
        f"median of {args.repeats} interleaved runs"
    )
    for batch in args.batch:
        x = torch.randn(batch, 3, 224, 224)
        with torch.inference_mode():
            diff = (model(x) - folded(x)).abs().max().item()
        timings = compare_forward({"bn": model, "folded": folded}, x, args.repeats)
        t_bn, t_fold = timings["bn"], timings["folded"]
        print(
            f"batch {batch:>3}: with BN {t_bn}; folded {t_fold}; "
            f"speed-up {t_bn.median_ms / t_fold.median_ms:.2f}x; max |logit diff| {diff:.2e}"
        )


if __name__ == "__main__":
    main()

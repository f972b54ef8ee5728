"""Standard vs depthwise separable convolution: parameters, MACs and measured CPU latency (14.8).

Prints, for several layer shapes, how many times fewer MACs the separable layer needs and how
many times faster it actually runs, plus the share of the separable layer's time spent in its
depthwise half. Run:  python benchmarks/bench_separable.py [--threads N] [--batch B]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from cnnbook.models.mobile import separable_conv_params, standard_conv_params
from cnnbook.summary import count_macs
from cnnbook.timing import compare_forward

SHAPES = [  # (C_in, C_out, H=W, k)
    (32, 64, 112, 3),
    (64, 128, 56, 3),
    (128, 256, 28, 3),
    (256, 512, 14, 3),
    (512, 512, 7, 3),
    (128, 256, 28, 5),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, float32, "
        f"median of {args.repeats} interleaved runs"
    )
    print(
        f"{'C_in->C_out':>12} {'HxW':>7} {'k':>2} {'params x':>9} {'MACs x':>7} "
        f"{'std ms':>8} {'sep ms':>8} {'speed-up':>8} {'dw share':>8}"
    )
    for c_in, c_out, size, k in SHAPES:
        std = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False).eval()
        dw = nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False).eval()
        pw = nn.Conv2d(c_in, c_out, 1, bias=False).eval()
        sep = nn.Sequential(dw, pw).eval()
        x = torch.randn(args.batch, c_in, size, size)
        macs_ratio = count_macs(std, x) / count_macs(sep, x)
        param_ratio = standard_conv_params(c_in, c_out, k) / separable_conv_params(c_in, c_out, k)
        t = compare_forward({"std": std, "sep": sep, "dw": dw}, x, args.repeats)
        t_std, t_sep, t_dw = (t[n].median_ms for n in ("std", "sep", "dw"))
        print(
            f"{c_in:>5}->{c_out:<5} {size:>3}x{size:<3} {k:>2} {param_ratio:>9.1f} "
            f"{macs_ratio:>7.1f} {t_std:>8.2f} {t_sep:>8.2f} {t_std / t_sep:>8.1f} "
            f"{t_dw / t_sep:>8.0%}"
        )


if __name__ == "__main__":
    main()

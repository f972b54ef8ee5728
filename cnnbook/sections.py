"""The chapter's sections in reading order (the start page, the README and the navigation tests).

One record per section: its number, file name stem, title and a rough full-mode run time. The
start page (``START_HERE.ipynb``, written by ``scripts/make_start_page.py``) is generated from
this list, and tests check that every notebook it names exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """One section of Chapter 14.

    Attributes:
        number: ``"14.1"`` ... ``"14.17"``.
        stem: File name without ``.ipynb``; the same in ``notebooks/``, ``exercises/`` and
            ``solutions/``.
        title: The section's title.
        cpu: Full-mode wall time on the laptop profile (:mod:`cnnbook.profiles`; README table).
        headline: Regular expression matching the printed line with the figure the notebook
            teaches and asserts (``scripts/execute_notebooks.py`` puts it in its time table).
    """

    number: str
    stem: str
    title: str
    cpu: str
    headline: str = ""

    @property
    def notebook(self) -> str:
        """Path of the section notebook, relative to the repository root."""
        return f"notebooks/{self.stem}.ipynb"

    @property
    def exercises(self) -> str:
        """Path of the exercise notebook, relative to the repository root."""
        return f"exercises/{self.stem}.ipynb"

    @property
    def solutions(self) -> str:
        """Path of the solution notebook, relative to the repository root."""
        return f"solutions/{self.stem}.ipynb"


SECTIONS: tuple[Section, ...] = (
    Section(
        "14.1",
        "14_01_convolution",
        "The convolution operation",
        "~10 s",
        headline=r"max \|conv\(shift\(x\)\) - shift\(conv\(x\)\)\|",
    ),
    Section(
        "14.2",
        "14_02_stride_padding_dilation",
        "Stride, padding and dilation",
        "~10 s",
        headline=r"formula == nn\.Conv2d on",
    ),
    Section(
        "14.3",
        "14_03_receptive_fields",
        "Feature maps and receptive fields",
        "~15 s",
        headline=r"AlexNet measured by back-propagation",
    ),
    Section("14.4", "14_04_pooling", "Pooling layers", "< 10 s", headline=r"GAP \+ linear"),
    Section(
        "14.5",
        "14_05_basic_cnn",
        "Building a basic CNN",
        "~2.5 min",
        headline=r"test accuracy \(reported once\)",
    ),
    Section(
        "14.6",
        "14_06_landmark_architectures",
        "Landmark CNN architectures",
        "~3 min",
        headline=r"LeNet-5 test accuracy",
    ),
    Section("14.7", "14_07_one_by_one_convolutions", "1x1 convolutions", "~10 s", headline=r"^ratio +:"),
    Section(
        "14.8",
        "14_08_depthwise_separable",
        "Depthwise separable convolutions",
        "~20 s",
        headline=r"^reduction:",
    ),
    Section(
        "14.9",
        "14_09_transfer_learning",
        "Transfer learning with pretrained CNNs",
        "~3 min",
        headline=r"chosen on validation:",
    ),
    Section(
        "14.10",
        "14_10_visualizing_features",
        "Visualising learned features",
        "~1 min",
        headline=r"max \|ours - pytorch_grad_cam\|",
    ),
    Section(
        "14.11", "14_11_batch_normalization", "Batch normalisation in CNNs", "~45 s", headline=r"^speed-up"
    ),
    Section(
        "14.12",
        "14_12_modern_design",
        "Modern CNN design principles",
        "~20 s",
        headline=r"max \|our logits - reference logits\|",
    ),
    Section(
        "14.13", "14_13_beyond_classification", "CNNs beyond classification", "~2.5 min", headline=r"^mIoU "
    ),
    Section(
        "14.14",
        "14_14_cnn_vs_vit",
        "CNNs vs Vision Transformers",
        "~2 min",
        headline=r"CNN vs ViT test accuracy:",
    ),
    Section(
        "14.15",
        "14_15_training_pipeline",
        "The complete training pipeline",
        "~3.5 min",
        headline=r"test accuracy, measured once",
    ),
    Section(
        "14.16",
        "14_16_pitfalls",
        "Common pitfalls and how to catch them",
        "~3.5 min",
        headline=r"balanced accuracy",
    ),
    Section(
        "14.17",
        "14_17_summary",
        "Summary: choosing an architecture",
        "~25 s",
        headline=r"^AlexNet: .* M parameters",
    ),
)

"""cnnbook.source shows exactly the code that runs."""

from __future__ import annotations

import inspect

import pytest

from cnnbook import source
from cnnbook.arrays import train_val_split


def test_source_is_the_running_code() -> None:
    code = source.show_source(train_val_split)
    assert code.data == inspect.getsource(train_val_split).rstrip()
    assert code.data.startswith("def train_val_split(")
    assert "<span" in code._repr_html_()  # highlighted for JupyterLab


def test_several_objects_in_order_and_methods_dedented() -> None:
    from cnnbook.arrays import ImageArrays

    text = source.show_source(ImageArrays.subset, train_val_split).data
    assert text.startswith("def subset(")
    assert "\n\ndef train_val_split(" in text


@pytest.mark.parametrize("bad", [len, 3, object()])
def test_objects_without_source_get_a_clear_error(bad) -> None:
    with pytest.raises(TypeError, match="show_source|No Python source"):
        source.show_source(bad)
    with pytest.raises(TypeError, match="at least one"):
        source.show_source()

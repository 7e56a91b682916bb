"""User models as their authors wrote them: constructor arguments, shadowed nn.Module
attributes, and code that exits or interrupts instead of returning."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from segedge.export.models.segnet import MaxUnpool2x2, set_index_free_unpool
from segedge.export.models.user_model import (
    build_user_model,
    constructor_kwargs,
    parse_model_args,
    shadowed_methods,
    user_code,
)
from segedge.runtime.cli_support import Terminated
from segedge.runtime.errors import ExportError, InputError

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


def test_model_args_are_python_literals_else_strings() -> None:
    assert parse_model_args(["classes=12 p=2", "q=8", "name=espnet", "scale=0.5",
                             "sizes=(1,2)", "pretrained=False", "path=a/b.pth"]) == (
        ("classes", 12), ("p", 2), ("q", 8), ("name", "espnet"), ("scale", 0.5),
        ("sizes", (1, 2)), ("pretrained", False), ("path", "a/b.pth"))
    assert parse_model_args([]) == ()


@pytest.mark.parametrize(("tokens", "message"), [
    (["classes"], "--model-args: expected name=value pairs (e.g. classes=12 p=2), got "
                  "'classes'"),
    (["1x=2"], "--model-args: expected name=value pairs (e.g. classes=12 p=2), got '1x=2'"),
    (["p=1", "p=2"], "--model-args: expected each name once, got p twice"),
])
def test_bad_model_args_are_one_line(tokens: list[str], message: str) -> None:
    with pytest.raises(InputError) as err:
        parse_model_args(tokens)
    assert str(err.value) == message


def test_constructor_gets_its_arguments_and_num_classes_when_it_takes_it() -> None:
    def espnet(classes: int, p: int = 2, q: int = 3) -> None: ...

    def tiny(num_classes: int = 3, width: int = 8) -> None: ...

    ref = "m.py:ESPNet"
    assert constructor_kwargs(ref, espnet, 12, (("classes", 12), ("q", 8))) == {
        "classes": 12, "q": 8}
    assert constructor_kwargs(ref, tiny, 5, (("width", 4),)) == {"width": 4, "num_classes": 5}
    assert constructor_kwargs(ref, tiny, 5, (("num_classes", 7),)) == {"num_classes": 7}
    with pytest.raises(InputError) as err:
        constructor_kwargs(ref, espnet, 12, (("classes", 12), ("r", 1)))
    assert str(err.value) == ("--model-args: expected arguments m.py:ESPNet takes (classes, "
                              "p=2, q=3), got classes=12, r=1: got an unexpected keyword "
                              "argument 'r'")
    with pytest.raises(InputError) as err:
        constructor_kwargs(ref, espnet, 12, ())
    assert str(err.value) == ("--model-args: expected arguments m.py:ESPNet takes (classes, "
                              "p=2, q=3), got none: missing a required argument: 'classes'")


def test_builds_a_model_whose_constructor_is_classes_p_q() -> None:
    model = build_user_model(f"{FIXTURE}:ShadowsModules", 3, (("classes", 3), ("p", 2),
                                                              ("q", 8)))
    assert isinstance(model.modules, list) and len(model.modules) == 2
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 8, 8)


def test_rewrite_pass_walks_a_model_that_shadows_modules() -> None:
    """The SegNet rewrite pass runs on every model; `self.modules = [...]` broke it."""
    class Unpools(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unpool = MaxUnpool2x2()
            self.modules = [self.unpool]  # type: ignore[assignment]

    model = Unpools()
    with pytest.raises(TypeError):
        model.modules()  # type: ignore[operator]  (what a bound call does)
    assert set_index_free_unpool(model, True) == 1 and model.unpool.index_free
    assert shadowed_methods(model) == ["modules (list)"]
    assert shadowed_methods(nn.Sequential(model)) == ["0.modules (list)"]
    assert shadowed_methods(nn.Conv2d(1, 1, 1)) == []


def test_user_code_turns_exits_into_one_error() -> None:
    with pytest.raises(ExportError) as err, user_code("m.py:Net"):
        sys.exit(0)
    assert str(err.value) == ("m.py:Net: expected the model code to return, got sys.exit(0) "
                              "(SystemExit)")
    with pytest.raises(ExportError) as err, user_code("m.py:Net"):
        raise KeyboardInterrupt
    assert str(err.value) == ("m.py:Net: expected the model code to return, got a "
                              "KeyboardInterrupt it raised itself (no Ctrl-C was pressed)")
    with pytest.raises(Terminated), user_code("m.py:Net"):  # SIGTERM still terminates
        raise Terminated
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as interrupted, user_code("m.py:Net"):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C still interrupts
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    assert type(interrupted.value) is KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_an_export_failure_names_shadowed_methods(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from segedge.export.onnx import convert

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("'list' object is not callable")

    for name in ("dynamo", "torchscript"):
        monkeypatch.setitem(convert.EXPORTERS, name, broken)
    model = build_user_model(f"{FIXTURE}:ShadowsModules", 3, (("classes", 3), ("p", 1),
                                                              ("q", 4)))
    spec = convert.ExportSpec(output_names=("logits",), input_axes={}, output_axes={})
    with pytest.raises(ExportError) as err:
        convert.export_onnx(model, torch.zeros(1, 3, 8, 8), tmp_path / "x.onnx", spec)
    assert str(err.value) == (
        "both ONNX exporters failed: dynamo: RuntimeError: 'list' object is not callable | "
        "torchscript: RuntimeError: 'list' object is not callable (note: modules (list) "
        "shadows nn.Module methods the exporters may call; renaming them in the model may "
        "fix this)")
    assert list(tmp_path.iterdir()) == []

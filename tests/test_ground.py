"""The ground floor: the generic registry, scoped seeding, the cache root, atomic writes and JSON files."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import mmgeom._io as io_module
from mmgeom._io import atomic_write_bytes, atomic_write_text, write_json
from mmgeom._paths import cache_root
from mmgeom._registry import Registry
from mmgeom.seeding import capture_rng_state, restore_rng_state, seed_everything, seeded

# ------------------------------------------------------------------------------------------ registry


def _registry() -> Registry[type]:
    reg: Registry[type] = Registry("widget")

    @reg.register("b-two")
    class Two:
        def __init__(self, size: int = 2) -> None:
            self.size = size

    @reg.register("a-one")
    class One:
        pass

    return reg


def test_registry_creates_by_name_and_lists_sorted_names():
    reg = _registry()
    assert reg.list() == ["a-one", "b-two"]
    assert reg.list("b-*") == ["b-two"]
    made = reg.create("b-two", size=5)
    assert type(made).__name__ == "Two" and made.size == 5
    assert "a-one" in reg and "c" not in reg and len(reg) == 2


def test_registry_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        _registry().create("a-on")
    assert str(err.value) == "widget: unknown name 'a-on'; registered widgets are ['a-one', 'b-two']"
    heads: Registry[type] = Registry("head", key="kind")
    with pytest.raises(ValueError, match=r"^head: unknown kind 'x'; registered heads are \[\]$"):
        heads.get("x")


def test_registry_refuses_a_second_class_under_a_taken_name():
    reg = _registry()
    first = reg.get("a-one")
    assert reg.register("a-one")(first) is first  # the same class again (a re-import) is fine

    class Other:
        pass

    with pytest.raises(ValueError, match=r"^widget name 'a-one' is already registered to One$"):
        reg.register("a-one")(Other)
    assert reg.get("a-one") is first


def test_losses_and_heads_use_the_registry_with_their_old_messages():
    from mmgeom.losses import create_loss
    from mmgeom.models import create_head

    with pytest.raises(ValueError, match=r"^loss: unknown name 'nope'; registered losses are \["):
        create_loss("nope")
    with pytest.raises(
        ValueError, match=r"^head: unknown kind 'nope'; registered heads are \['cnn', 'linear', 'mlp'"
    ):
        create_head("nope", 3, 2)


# ------------------------------------------------------------------------------------------- seeding


def _draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()  # noqa: NPY002


def test_seeded_draws_the_seeds_sequence_and_restores_the_previous_states():
    # hand-made reference: what seed 7 draws, and what the outer generators draw from a known state
    seed_everything(7)
    inside_ref = _draw()
    seed_everything(123)
    outer_ref = [_draw(), _draw()]

    seed_everything(123)
    first = _draw()
    with seeded(7):
        inside = _draw()
    second = _draw()
    assert inside == inside_ref
    assert [first, second] == outer_ref  # the block did not move the outer sequence


def test_seeded_restores_on_error_and_none_only_scopes():
    seed_everything(5)
    expected = _draw()
    seed_everything(5)

    def draw_then_fail() -> None:
        with seeded(1):
            _draw()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        draw_then_fail()
    assert _draw() == expected
    seed_everything(5)
    with seeded(None):
        _draw()  # draws from the outer sequence, which is then rewound
    assert _draw() == expected


def test_capture_restore_round_trip_is_plain_values():
    state = capture_rng_state()
    assert not any(isinstance(v, np.ndarray) for v in state["numpy"])  # loads with weights_only=True
    a = _draw()
    restore_rng_state(state)
    assert _draw() == a


# -------------------------------------------------------------------------------------------- paths


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("MMGEOM_CACHE_DIR")
    assert cache_root() == tmp_path / "xdg" / "mmgeom"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset (XDG spec)
    assert cache_root() == tmp_path / "home" / ".cache" / "mmgeom"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == tmp_path / "home" / ".cache" / "mmgeom"
    assert not (tmp_path / "home").exists()  # nothing is created


def test_cache_root_without_a_home_says_what_to_set(monkeypatch):
    monkeypatch.delenv("MMGEOM_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(RuntimeError, match=r"home directory is unknown .*set \$MMGEOM_CACHE_DIR"):
        cache_root()


def test_native_kernels_live_under_the_cache_root(monkeypatch, tmp_path):
    from mmgeom.retrieval import _native

    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    assert _native.cache_dir() == tmp_path / "native"


# ----------------------------------------------------------------------------------------------- io


def test_atomic_text_write_replaces_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["a.txt"]


def test_failed_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic_write_bytes(tmp_path / "a.bin", b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(io_module.os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]  # the temporary file is gone


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic_write_text(tmp_path / "a.txt", "old")
    written = []

    def half_write(self: Path, data: bytes) -> int:
        written.append(self)
        with open(self, "wb") as fh:
            fh.write(data[:1])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", half_write)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new text")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"] and written and written[0] != path


def test_write_json_rounds_floats_and_nulls_non_finite(tmp_path):
    data = {
        "acc": 0.123456789,
        "big": 123456789.0,
        "bad": [float("nan"), float("inf")],
        "t": torch.tensor([0.5, 1.0 / 3.0]),
        "p": Path("x/y"),
        1: (1, 2),
    }
    path = write_json(tmp_path / "r.json", data, digits=3)
    assert json.loads(path.read_text()) == {
        "acc": 0.123,
        "big": 123000000.0,
        "bad": [None, None],
        "t": [0.5, 0.333],
        "p": "x/y",
        "1": [1, 2],
    }
    assert path.read_text().startswith('{\n "acc": 0.123,') and path.read_text().endswith("}\n")


def test_moved_names_warn_and_resolve() -> None:
    from mmgeom._deprecation import moved_names

    getattr_, dir_ = moved_names("old.place", {"sqrt": "math"})
    with pytest.warns(DeprecationWarning, match=r"old\.place\.sqrt moved to math\.sqrt"):
        assert getattr_("sqrt")(9.0) == 3.0
    with pytest.raises(AttributeError, match=r"'old\.place' has no attribute 'cos'"):
        getattr_("cos")
    assert dir_() == ["sqrt"]

"""mmgeom.train.config: strict sections, key-path error messages, YAML loading and dotted overrides."""

from __future__ import annotations

import pytest

from mmgeom.train import ConfigError, ExperimentConfig, apply_overrides, config_from_dict, load_config
from mmgeom.train.presets import packaged_config_path


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(raw):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    return str(err.value)


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    cfg = ExperimentConfig()
    assert cfg.loss.name == "infonce" and cfg.optim.lr == 1e-3
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again == cfg


def test_packaged_demo_config_is_valid():
    cfg = load_config(packaged_config_path("demo"))
    assert cfg.data.view_names() == ("fou", "fac", "kar", "pix", "zer", "mor")
    assert cfg.loss.name == "infonce" and cfg.eval.split == "test"


def test_unknown_key_names_its_path():
    msg = error_of({"loss": {"name": "infonce", "temprature": 0.1}})
    assert "loss.temprature: unknown key" in msg
    assert "allowed keys: name, kwargs, use_labels" in msg


def test_unknown_top_level_section_with_a_hint():
    msg = error_of({"optimizer": {"lr": 1.0}})
    assert "optimizer: unknown key" in msg and "did you mean 'optim'" in msg


def test_unknown_loss_argument_names_the_kwargs_path():
    msg = error_of({"loss": {"name": "infonce", "kwargs": {"temprature": 0.1}}})
    assert "loss.kwargs.temprature" in msg and "did you mean 'temperature'" in msg


def test_bad_loss_argument_value_is_reported_by_the_loss():
    msg = error_of({"loss": {"name": "infonce", "kwargs": {"temperature": -1}}})
    assert "loss.kwargs" in msg and "temperature" in msg and "> 0" in msg


def test_several_errors_are_all_listed_with_paths():
    msg = error_of({"optim": {"lr": -1, "lrr": 2}, "train": {"steps": "many"}})
    assert "optim.lr:" in msg and "optim.lrr: unknown key" in msg and "train.steps:" in msg


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"loss": {"name": "infonse"}}, "loss.name"),
        ({"model": {"head": "transformer"}}, "model.head"),
        ({"model": {"dropout": 1.0}}, "model.dropout"),
        ({"data": {"dataset": "mnist"}}, "data.dataset"),
        ({"data": {"views": ["fou", "pixels"]}}, "data.views"),
        ({"data": {"fractions": [0.5, 0.2, 0.2]}}, "data.fractions"),
        ({"optim": {"warmup_steps": 600}, "train": {"steps": 500}}, "optim.warmup_steps"),
        ({"optim": {"min_lr": 0.1}}, "optim.min_lr"),
        ({"eval": {"pairs": [["fou", "audio"]]}}, "eval.pairs"),
        ({"eval": {"ks": [0, 5]}}, "eval.ks"),
        ({"train": {"batch_size": 1}}, "train.batch_size"),
    ],
)
def test_invalid_values_name_their_path(raw, path):
    assert f"{path}:" in error_of(raw)


def test_yaml_exponent_floats_are_numbers_everywhere(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 1e-3\nloss:\n  name: infonce\n  kwargs:\n    temperature: 5e-2\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 0.001
    assert cfg.loss.kwargs["temperature"] == 0.05 and isinstance(cfg.loss.kwargs["temperature"], float)


def test_overrides_set_values_of_each_type(tmp_path):
    path = write(tmp_path, "train:\n  steps: 10\n")
    cfg = load_config(
        path,
        [
            "optim.lr=1e-3",
            "train.steps=25",
            "data.views=[pix, fou]",
            "loss.kwargs.temperature=0.05",
            "optim.grad_clip=null",
            "model.layer_norm=false",
        ],
    )
    assert cfg.optim.lr == 0.001 and cfg.train.steps == 25
    assert cfg.data.views == ["pix", "fou"]
    assert cfg.loss.kwargs == {"temperature": 0.05}
    assert cfg.optim.grad_clip is None and cfg.model.layer_norm is False


def test_override_of_an_unknown_key_is_a_path_error(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        load_config(write(tmp_path, "{}\n"), ["optim.lrr=1"])


@pytest.mark.parametrize(
    ("override", "match"),
    [("optim.lr", "expected KEY.PATH=VALUE"), ("=3", "expected KEY.PATH=VALUE"), ("optim..lr=1", "KEY.PATH")],
)
def test_malformed_overrides(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides({}, [override])


def test_override_cannot_descend_into_a_value():
    with pytest.raises(ConfigError, match=r"optim\.lr is a value, not a section"):
        apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr.x=2"])


def test_overrides_do_not_mutate_the_input():
    raw = {"optim": {"lr": 1.0}}
    out = apply_overrides(raw, ["optim.lr=2"])
    assert raw == {"optim": {"lr": 1.0}} and out == {"optim": {"lr": 2}}


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:\d+: invalid YAML"):
        load_config(write(tmp_path, "optim:\n  lr: [1, 2\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    assert load_config(write(tmp_path, "", "empty.yaml")) == ExperimentConfig()


def test_assignment_is_validated():
    cfg = ExperimentConfig()
    with pytest.raises(ValueError, match="greater than 0"):
        cfg.optim.lr = -1.0

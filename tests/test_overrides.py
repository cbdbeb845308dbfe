"""Command-line overrides of method and model keys the config file does not set."""
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from conftest import REPO, load_config
from test_faults import argv_for, run_main
from jaxquant import models
from jaxquant.config_check import complete_sections
from jaxquant.methods import mirror, baselines


def resolved(tmp_path, *overrides, config="configs/fp_digits.py"):
    """(exit code, stderr, the config `main` hands the trainer) for `overrides`."""
    seen = []

    def run(config, workdir, overwrite=False):
        seen.append(config)
        return dict(test_accuracy=0.0, step=0)
    code, _, err = run_main(argv_for(tmp_path, *overrides, config=config), run=run)
    return code, err, (seen[0] if seen else None)


def test_method_key_is_overridable_after_switching_the_method(tmp_path):
    code, err, config = resolved(tmp_path, "--config.method.name=md_tanh_s",
                                 "--config.method.bts=1.05")
    assert code == 0, err
    assert config.method.to_dict() == dict(name="md_tanh_s", levels=2, bts=1.05, bti=200,
                                           beta_max=1e35)


def test_model_key_is_overridable_when_the_file_does_not_set_it(tmp_path):
    code, err, config = resolved(tmp_path, "--config.model.init=xavier_uniform",
                                 "--config.model.bn_eps=0.001", config="configs/bc_fashion_mnist.py")
    assert code == 0, err
    assert config.model.init == "xavier_uniform" and config.model.bn_eps == 0.001
    assert config.model.name == "lenet5" and config.model.batch_norm is True  # default filled in


def test_switching_the_model_drops_the_old_models_keys_and_takes_the_new_ones(tmp_path):
    code, err, config = resolved(tmp_path, "--config.model.name=resnet18",
                                 "--config.model.stem=imagenet")
    assert code == 0, err
    assert config.model.stem == "imagenet" and config.model.stem_stride == 1
    assert "features" not in config.model and "batch_norm" not in config.model  # mlp's keys


def test_keys_both_methods_read_keep_the_files_values_on_a_switch(tmp_path):
    # md_tanh_s_digits sets levels=2, bts=1.2, bti=10, beta_max=1e35; pmf reads all four
    code, err, config = resolved(tmp_path, "--config.method.name=pmf",
                                 config="configs/md_tanh_s_digits.py")
    assert code == 0, err
    from jaxquant.methods.mirror import DEFAULTS
    # the four shared keys keep the file's values; pmf's own keys get its defaults
    assert config.method.to_dict() == dict(DEFAULTS["pmf"], name="pmf", levels=2, bts=1.2, bti=10,
                                           beta_max=1e35)
    assert config.method.logit_init == "random" and config.method.jacobian == "paper"


def test_a_key_whose_default_is_none_takes_a_value_of_any_type(tmp_path):
    code, err, config = resolved(tmp_path, "--config.method.name=ste", "--config.method.alpha=0.5",
                                 "--config.model.use_bias=False")
    assert code == 0, err
    assert config.method.alpha == 0.5 and config.model.use_bias is False


def test_a_key_of_another_method_is_refused_naming_the_method_and_its_keys(tmp_path):
    code, err, _ = resolved(tmp_path, "--config.method.name=md_tanh_s",
                            "--config.method.variant=proxquant")
    assert code == 2 and "Traceback" not in err
    assert "method 'md_tanh_s' has no key 'variant'" in err
    assert "Valid keys of method 'md_tanh_s': beta_max, bti, bts, levels." in err
    assert "'variant' is a key of method binary_connect, metaquant" in err


def test_a_misspelt_method_key_still_gets_its_did_you_mean(tmp_path):
    code, err, _ = resolved(tmp_path, "--config.method.name=md_tanh_s", "--config.method.bst=1.1")
    assert code == 2 and "Did you mean config.method.bts?" in err


def test_a_value_of_the_wrong_type_for_a_filled_key_exits_2(tmp_path):
    code, err, _ = resolved(tmp_path, "--config.method.name=md_tanh_s", "--config.method.bti=often")
    assert code == 2 and "Traceback" not in err and "often" in err


def test_complete_sections_fills_defaults_and_keeps_what_the_file_sets():
    config = load_config("bc_digits")  # method binary_connect, variant md_bnn; model mlp
    complete_sections(config, {"method": "binary_connect"})
    assert config.method.to_dict() == dict(name="binary_connect", **baselines.DEFAULTS["binary_connect"])
    assert config.model.to_dict() == {**models.keys("mlp"), "name": "mlp", "features": (256, 256)}
    unknown = ml_collections.ConfigDict(dict(method=dict(name="nope", x=1), model=dict(name="mlp")))
    complete_sections(unknown)
    assert unknown.method.to_dict() == dict(name="nope", x=1)  # left for validate to report


def test_config_json_records_every_key_of_the_method_and_model(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-m", "jaxquant.main", "--config", "configs/fp_digits.py",
         "--workdir", str(tmp_path / "w"), "--config.method.name=md_tanh_s",
         "--config.method.bts=1.05", "--config.train.steps=2", "--config.model.features=(16,)"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "w" / "config.json") as f:
        saved = json.load(f)
    assert saved["method"] == {**mirror.DEFAULTS["md_tanh_s"], "name": "md_tanh_s", "bts": 1.05}
    assert saved["model"] == {**json.loads(json.dumps(models.keys("mlp"))), "name": "mlp",
                              "features": [16]}


@pytest.mark.parametrize("override", ["--config.method.name=md_tanh_s",
                                      "--config.model.name=lenet5"])
def test_the_space_separated_name_flag_is_applied_too(tmp_path, override):
    flag, value = override.split("=")
    section = flag.split(".")[1]
    key = dict(method="bts", model="batch_norm")[section]
    new = dict(method="1.5", model="False")[section]
    code, err, config = resolved(tmp_path, flag, value, f"--config.{section}.{key}={new}")
    assert code == 0, err
    assert config[section].name == value and str(config[section][key]) == new

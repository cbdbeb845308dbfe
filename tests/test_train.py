"""Trainer: accuracy on the embedded data, resume equivalence, data parallelism."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, load_config
from jaxquant import checkpoints, train


def tiny_digits(**train_kw):
    c = load_config("fp_digits")
    c.model.features = (64,)
    # 1437 // 64 = 22 steps per epoch; logging every 11 keeps log intervals aligned
    # with the epoch boundary where the run is interrupted.
    c.train.update(epochs=4, batch_size=64, log_every_steps=11, eval_every_steps=22, **train_kw)
    return c


def test_fp_digits_reaches_97_percent(tmp_path):
    result = train.train_and_evaluate(load_config("fp_digits"), str(tmp_path), log=lambda *_: None)
    assert result["test_accuracy"] >= 0.97
    for name in ("config.json", "metrics.jsonl", "summary.txt", "curves.png", "result.json"):
        assert (tmp_path / name).exists(), name
    records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert records[-1]["step"] == result["step"]
    assert records[-1]["test_accuracy"] == pytest.approx(result["test_accuracy"])


def test_interrupted_then_resumed_run_equals_uninterrupted(tmp_path):
    config = tiny_digits()
    full = train.train_and_evaluate(config, str(tmp_path / "full"), log=lambda *_: None)
    spe = full["step"] // config.train.epochs
    part = train.train_and_evaluate(config, str(tmp_path / "cut"), stop_after_steps=2 * spe,
                                    log=lambda *_: None)
    assert part["preempted"] and part["step"] == 2 * spe
    resumed = train.train_and_evaluate(config, str(tmp_path / "cut"), log=lambda *_: None)
    assert resumed["step"] == full["step"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    p_full, _, _ = checkpoints.load_weights(str(tmp_path / "full"))
    p_cut, _, _ = checkpoints.load_weights(str(tmp_path / "cut"))
    jax.tree.map(np.testing.assert_array_equal, p_full, p_cut)
    read = lambda d: [json.loads(l) for l in open(tmp_path / d / "metrics.jsonl")]  # noqa: E731
    a, b = read("full"), read("cut")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in ("train_loss", "test_accuracy"):
            if k in ra:
                assert ra[k] == pytest.approx(rb[k], rel=1e-6), (ra["step"], k)


_MULTI_DEVICE = r"""
import json, os, sys
sys.path.insert(0, {repo!r})
from conftest import load_config
from jaxquant import train
import jax
c = load_config("fp_digits")
c.model.features = (64,)
c.train.update(epochs=2, batch_size=64, log_every_steps=1)
r = train.train_and_evaluate(c, sys.argv[1], log=lambda *_: None)
print(json.dumps(dict(devices=jax.device_count(), **r)))
"""


def _run_with_devices(n, workdir):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    code = _MULTI_DEVICE.format(repo=os.path.join(REPO, "tests"))
    out = subprocess.run([sys.executable, "-c", code, str(workdir)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_host_devices_match_one_device_loss_trajectory(tmp_path):
    one = _run_with_devices(1, tmp_path / "one")
    four = _run_with_devices(4, tmp_path / "four")
    assert (one["devices"], four["devices"]) == (1, 4)
    read = lambda d: [r["train_loss"] for r in map(json.loads, open(d / "metrics.jsonl"))]  # noqa: E731
    np.testing.assert_allclose(read(tmp_path / "one"), read(tmp_path / "four"), rtol=2e-4)

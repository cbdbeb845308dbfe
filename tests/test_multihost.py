"""Multi-host: two local CPU processes on JAX's distributed runtime (gloo collectives)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

from conftest import REPO

_WORKER = r"""
import json, sys
sys.path.insert(0, {tests!r})
from conftest import load_config
from jaxquant import parallel, train
coordinator, n, pid, workdir, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
kill_pid, kill_step = map(int, sys.argv[6].split(":"))  # SIGTERM to process kill_pid alone
if pid == kill_pid:
    import os, signal
    get = train._Batches.get
    def get_and_maybe_signal(self, step):
        if step == kill_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return get(self, step)
    train._Batches.get = get_and_maybe_signal
if n > 1:
    parallel.initialize(coordinator, n, pid)
c = load_config("fp_digits")
c.model.features = (32,)
# SGD, not Adam: Adam turns the float noise of zero-gradient coordinates (the
# always-blank corner pixels, the bias before BN) into full-size steps.
c.optimizer.update(name="momentum", lr=0.05)
c.train.update(epochs=2, batch_size=32, log_every_steps=1, eval_every_steps=22)
r = train.train_and_evaluate(c, workdir, stop_after_steps=int(stop) or None, log=lambda *_: None)
import jax
print(json.dumps(dict(processes=jax.process_count(), devices=jax.device_count(), **r)))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(n, workdir, stop=0, kill="-1:-1"):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    code = _WORKER.format(tests=os.path.join(REPO, "tests"))
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", code, address, str(n), str(i), str(workdir),
                               str(stop), kill], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def _losses(workdir):
    return [r["train_loss"] for r in map(json.loads, open(workdir / "metrics.jsonl"))]


def _final_params(workdir):
    from jaxquant import checkpoints
    return checkpoints.load_weights(str(workdir))[0]


def test_two_processes_train_in_lockstep_like_one_process(tmp_path):
    pair = _launch(2, tmp_path / "pair")
    single = _launch(1, tmp_path / "single")
    assert [r["processes"] for r in pair] == [2, 2] and pair[0]["devices"] == 2
    assert pair[0]["test_accuracy"] == pair[1]["test_accuracy"]
    # Same global batches and updates; only the summation order of the gradient
    # all-reduce differs (gloo across processes vs one device).
    np.testing.assert_allclose(_losses(tmp_path / "pair"), _losses(tmp_path / "single"), rtol=1e-4)
    import jax
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
                 _final_params(tmp_path / "pair"), _final_params(tmp_path / "single"))


def test_checkpoint_of_the_pair_resumes_in_a_single_process(tmp_path):
    pair = _launch(2, tmp_path / "run", stop=22)
    assert pair[0]["preempted"] and pair[0]["step"] == 22
    (resumed,) = _launch(1, tmp_path / "run")
    assert resumed["step"] == 88 and not resumed["preempted"]
    (single,) = _launch(1, tmp_path / "single")
    assert resumed["test_accuracy"] == single["test_accuracy"]
    np.testing.assert_allclose(_losses(tmp_path / "run"), _losses(tmp_path / "single"), rtol=1e-4)


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    # SIGTERM reaches process 1 (not the one that logs) during step 30: the processes
    # agree on it at the next step boundary, checkpoint step 31 together and stop.
    pair = _launch(2, tmp_path / "run", kill="1:30")
    assert [(r["preempted"], r["step"], r["signal"]) for r in pair] == [(True, 31, 15)] * 2
    (resumed,) = _launch(1, tmp_path / "run")
    (single,) = _launch(1, tmp_path / "single")
    assert resumed["step"] == 88 and resumed["test_accuracy"] == single["test_accuracy"]


def test_incomplete_multihost_flags_are_a_clear_error(tmp_path):
    from test_cli import cli
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path),
              "--coordinator_address=127.0.0.1:1234")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--num_processes" in out.stderr and "--process_id" in out.stderr
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path),
              "--coordinator_address=127.0.0.1:1234", "--num_processes=2", "--process_id=2")
    assert out.returncode == 2 and "0..1" in out.stderr

"""The command line: the README quickstart, and user mistakes without tracebacks."""
import os
import subprocess
import sys

import pytest

from conftest import REPO


def cli(*args, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "jaxquant.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_quickstart_command_ends_with_test_accuracy(tmp_path):
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "quick"))
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert float(last.split()[2].rstrip("%")) >= 97.0


@pytest.mark.parametrize("override, expected", [
    ("--config.dataset.name=digitz", ["digitz", "digits", "fashion_mnist"]),
    ("--config.model.name=resnet21", ["resnet21", "resnet20"]),
    ("--config.method.name=binary_conect", ["binary_conect", "binary_connect"]),
    ("--config.optimizer.name=adamm", ["adamm", "adam", "sgd"]),
    ("--config.dataset.name=image_folder:/nonexistent/folder", ["/nonexistent/folder"]),
    ("--config.train.batch_size=-3", ["config.train.batch_size", "-3"]),
    ("--config.model.act_bits=9", ["config.model.act_bits", "1..8"]),
    ("--config.quant.exclude=('head/.*',)", ["head/.*", "matches no parameter"]),
    ("--config.train.epochz=3", ["epochz"]),
    ("--config.optimizer.lr=fast", ["fast"]),
])
def test_user_mistakes_exit_2_with_a_message_and_no_traceback(tmp_path, override, expected):
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "w"), override,
              "--config.train.epochs=1")
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    for word in expected:
        assert word in out.stderr, (word, out.stderr[-2000:])


def test_missing_config_file_is_a_clear_error(tmp_path):
    out = cli("--config", "configs/nope.py", "--workdir", str(tmp_path))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "configs/nope.py" in out.stderr

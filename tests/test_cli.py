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


def test_readme_first_command_trains_a_binary_net_and_ends_with_its_compression(tmp_path):
    # the README's first command: MD-tanh-S, every tensor binary (1 bit per value)
    out = cli("--config", "configs/md_tanh_s_digits.py", "--workdir", str(tmp_path / "quick"))
    assert out.returncode == 0, out.stderr[-3000:]
    size, last = out.stdout.strip().splitlines()[-2:]
    assert last.startswith("test accuracy: ")
    assert float(last.split()[2].rstrip("%")) >= 97.0
    # 85,002 binary values: 32 bits each in float32, 1 bit + a 2-value codebook per tensor
    assert size.startswith("weights: float32 size 340,008 bytes;") and "compression" in size
    assert float(size.split("compression ")[1].split("x")[0]) > 30


@pytest.mark.slow  # the same CLI path as the first command, at 30 epochs
def test_readme_second_command_full_precision_reports_no_compression(tmp_path):
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "fp"))
    assert out.returncode == 0, out.stderr[-3000:]
    size, last = out.stdout.strip().splitlines()[-2:]
    assert float(last.split()[2].rstrip("%")) >= 97.0
    assert size.endswith(f"compression 1.0x (per layer: {tmp_path / 'fp' / 'summary.txt'})")


TINY = ("--config.model.features=(16,)", "--config.train.steps=6",
        "--config.train.eval_every_steps=3", "--config.train.log_every_steps=1")


def test_output_to_a_pipe_is_plain_lines_without_a_progress_bar(tmp_path):
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "w"), *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "\r" not in out.stdout and "\r" not in out.stderr
    assert "steps [" not in out.stderr  # no bar
    steps = [l.split(":")[0] for l in out.stdout.splitlines() if l.startswith("step ")]
    assert steps == ["step 3/6", "step 6/6"]  # one line per evaluation


def test_a_terminal_shows_a_progress_bar_with_steps_and_images_per_second(tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios
    import threading
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "jaxquant.main", "--config",
                             "configs/fp_digits.py", "--workdir", str(tmp_path / "w"), *TINY],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=600)
    reader.join(timeout=30)
    os.close(master)
    bar = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, bar[-3000:]
    assert "6/6 steps" in bar and "images/s" in bar and "\r" in bar
    assert "step 6/6:" in stdout


@pytest.mark.parametrize("override, expected", [
    ("--config.dataset.name=digitz", ["digitz", "digits", "fashion_mnist"]),
    ("--config.model.name=resnet21", ["resnet21", "resnet20"]),
    ("--config.method.name=binary_conect", ["binary_conect", "binary_connect"]),
    ("--config.optimizer.name=adamm", ["adamm", "adam", "sgd"]),
    ("--config.dataset.name=image_folder:/nonexistent/folder", ["/nonexistent/folder"]),
    ("--config.train.batch_size=-3", ["config.train.batch_size", "-3"]),
    ("--config.model.act_bits=9", ["config.model.act_bits", "1..8"]),
    ("--config.quant.exclude=('fc/.*',)", ["fc/.*", "matches no parameter"]),
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

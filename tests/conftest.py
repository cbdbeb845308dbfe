"""Test-wide settings: CPU only, quiet logs, a shared tiny-run helper."""
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# the CLI's persistent compilation cache stays out of the user's home (tests that
# exercise it point it at a temporary directory)
os.environ.setdefault("JAXQUANT_COMPILATION_CACHE", "off")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import pytest  # noqa: E402


def load_config(name: str):
    """`configs/<name>.py`'s get_config()."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def small_config(**train_kw):
    """fp_digits with a 16-unit MLP: 40 steps of batch 256 (8 epochs), checkpoints every 10."""
    c = load_config("fp_digits")
    c.model.features = (16,)
    c.train.update(**{**dict(epochs=8, batch_size=256, log_every_steps=5, eval_every_steps=10,
                             checkpoint_every_steps=10, keep_checkpoints=3), **train_kw})
    return c


@pytest.fixture
def config_from_file():
    return load_config

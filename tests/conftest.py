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


@pytest.fixture
def config_from_file():
    return load_config

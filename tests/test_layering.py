"""Import layering (DESIGN.md): methods know no model, dataset, trainer or CLI."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

FAMILIES = ["base", "baselines", "full_precision", "metaquant", "mirror", "pdqat", "proxquant"]
FORBIDDEN = ("jaxquant.data", "jaxquant.models", "jaxquant.train", "jaxquant.config_check",
             "jaxquant.main", "jaxquant.compare", "jaxquant.ptq", "jaxquant.export")


def imported_after(statement: str) -> list[str]:
    """The jaxquant modules a fresh interpreter has loaded after `statement`."""
    code = (f"import sys, json\n{statement}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('jaxquant'))))")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_methods_import_no_data_models_trainer_or_config_check():
    mods = imported_after("import jaxquant.methods\n" + "\n".join(
        f"import jaxquant.methods.{f}" for f in FAMILIES))
    assert "jaxquant.methods.mirror" in mods and "jaxquant.config_keys" in mods
    bad = [m for m in mods if m.startswith(FORBIDDEN)]
    assert not bad, f"jaxquant.methods pulled in {bad}"


def test_package_import_is_lazy_and_public_names_still_resolve():
    mods = imported_after("import jaxquant as jq\nassert callable(jq.md_tanh_s)")
    assert "jaxquant.methods.mirror" in mods
    assert not [m for m in mods if m.startswith(FORBIDDEN)]


def test_every_public_name_resolves():
    import jaxquant
    for name in jaxquant.__all__:
        assert getattr(jaxquant, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxquant.nope  # noqa: B018

"""Corruption never goes unnoticed: checkpoint checksums (resume, NaN guard, best/,
warm starts), the export manifest's own SHA-256 and field checks, evaluate's exit
status, and short, quiet messages (issue 18, items 5, 6, 13, 16)."""
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, small_config
from jaxquant import checkpoints, evaluate, export as E, train

quiet = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """A 40-step run stopped at step 20: checkpoints 10 and 20, best/20."""
    run = tmp_path_factory.mktemp("integrity") / "part"
    train.train_and_evaluate(small_config(), str(run), stop_after_steps=20, log=quiet)
    return run


def copy_run(partial, tmp_path):
    shutil.copytree(partial, tmp_path / "run")
    return tmp_path / "run"


def data_file(step_dir, item):
    """The largest tensor data file of one item of a saved step."""
    files = glob.glob(f"{step_dir}/{item}/**/d/*", recursive=True)
    assert files
    return max(files, key=os.path.getsize)


def flip_bit(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(data))


def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO),
                          timeout=300)


# ------------------------------------------------------------------ checkpoint checksums

def test_every_saved_step_lists_the_size_and_sha256_of_each_of_its_files(partial):
    for step_dir in [partial / "checkpoints" / "10", partial / "checkpoints" / "20", partial / "best" / "20"]:
        listed = json.load(open(step_dir / checkpoints.CHECKSUMS))["files"]
        on_disk = sorted(os.path.relpath(os.path.join(root, n), step_dir)
                         for root, _, names in os.walk(step_dir) for n in names)
        assert sorted(listed) == [f for f in on_disk if f != checkpoints.CHECKSUMS]
        for rel, entry in listed.items():
            data = open(step_dir / rel, "rb").read()
            assert entry == dict(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_an_asynchronous_save_keeps_the_values_of_save_time_though_the_state_is_donated(tmp_path):
    """The trainer donates its state to the next step while orbax still writes it."""
    import jax.numpy as jnp
    ckpt = checkpoints.Checkpointer(str(tmp_path), asynchronous=True)
    state = dict(w=jnp.arange(4096.0), step=jnp.int32(3))
    ckpt.save(3, dict(params=dict(w=state["w"])), dict(best=0.5), state=state)
    bump = jax.jit(lambda s: dict(w=s["w"] * 0 - 1, step=s["step"] + 1), donate_argnums=0)
    for _ in range(3):
        state = bump(state)
    try:
        assert ckpt.verify(3)  # waits for the write; sealed
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        restored, meta = ckpt.restore(3, abstract)
    finally:
        ckpt.close()
    np.testing.assert_array_equal(restored["w"], np.arange(4096.0))
    assert int(restored["step"]) == 3 and meta == dict(best=0.5)


def test_a_flipped_bit_in_the_latest_state_resumes_from_the_previous_step_and_says_so(partial, tmp_path):
    run = copy_run(partial, tmp_path)
    bad = data_file(run / "checkpoints" / "20", "state")
    flip_bit(bad)
    logs = []
    result = train.train_and_evaluate(small_config(), str(run), log=logs.append)
    warnings = [l for l in logs if l.startswith("warning")]
    assert f"step 20 ({run}/checkpoints/20): {bad}: SHA-256 mismatch" in warnings[0]
    assert f"resuming from the older checkpoint {run}/checkpoints/10" in warnings[1]
    assert "resumed from" in "\n".join(logs) and result["step"] == 40
    assert os.path.isfile(run / "checkpoints_unreadable" / "20" / os.path.relpath(bad, run / "checkpoints" / "20"))
    # the step the resumed run saved again is sealed and verifies
    assert checkpoints.verify(str(run / "checkpoints" / "20"))


def test_the_nan_guard_names_only_a_verified_checkpoint_as_the_last_good_one(tmp_path, monkeypatch):
    """Steps 5 and 10 are saved, step 10's state is damaged right after its save, and
    lr 3e27 from step 10 on makes the update non-finite: the guard names step 5."""
    save = checkpoints.Checkpointer.save

    def save_then_damage(self, step, *args, **kw):
        save(self, step, *args, **kw)
        self.wait()  # the trainer's saves are asynchronous: damage the written files
        if step == 10 and self.directory.endswith("checkpoints"):
            flip_bit(data_file(os.path.join(self.directory, str(step)), "state"))
    monkeypatch.setattr(checkpoints.Checkpointer, "save", save_then_damage)
    c = small_config(on_nonfinite="stop", checkpoint_every_steps=5)
    c.optimizer.name = "sgd"
    c.schedule.update(kind="piecewise", boundaries=(10,), factor=1e30)
    with pytest.raises(train.NonFiniteError) as e:
        train.train_and_evaluate(c, str(tmp_path), log=quiet)
    assert f"the last good checkpoint is step 5 in {tmp_path}/checkpoints" in str(e.value)


def test_best_checkpoint_export_and_warm_start_verify_the_weights(partial, tmp_path):
    run = copy_run(partial, tmp_path)
    best = data_file(run / "best" / "20", "weights")
    flip_bit(best)
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(f"{best}: SHA-256 mismatch")):
        E.export_run(str(run), str(tmp_path / "export"), best=True)
    latest = data_file(run / "checkpoints" / "20", "weights")
    flip_bit(latest)
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(f"{latest}: SHA-256 mismatch")):
        checkpoints.load_weights(str(run))
    c = small_config()
    c.init_checkpoint = str(run)
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(f"{latest}: SHA-256 mismatch")):
        train.build_experiment(c)
    # step 10 is intact and still loads
    assert checkpoints.load_weights(str(run), step=10)[2] == 10


def test_a_truncated_file_is_named_with_its_sizes(partial, tmp_path):
    run = copy_run(partial, tmp_path)
    bad = str(run / "checkpoints" / "20" / "meta" / "metadata")  # the run's meta JSON
    size = os.path.getsize(bad)
    with open(bad, "r+b") as f:
        f.truncate(size - 1)
    with pytest.raises(checkpoints.CorruptCheckpointError) as e:
        checkpoints.verify(str(run / "checkpoints" / "20"))
    assert str(e.value) == f"{bad}: {size - 1} bytes, {size} were saved (truncated or overwritten)"


def test_a_step_saved_without_checksums_resumes_unverified_with_a_warning(partial, tmp_path):
    """Checkpoints of an older jaxquant (or a save killed before its seal) still resume."""
    run = copy_run(partial, tmp_path)
    os.remove(run / "checkpoints" / "20" / checkpoints.CHECKSUMS)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                            train.init_state(train.build_experiment(small_config())))
    ckpt = checkpoints.Checkpointer(str(run), keep=3)
    logs = []
    try:
        state, _ = train._restore_latest(ckpt, abstract, logs.append)
        assert int(state["step"]) == 20 and ckpt.latest_verified_step() == 10
    finally:
        ckpt.close()
    assert logs == [f"warning: checkpoint step 20 has no {checkpoints.CHECKSUMS}; resumed unverified."]


# ------------------------------------------------------------------ short, quiet messages

def test_an_unreadable_checkpoint_warning_names_the_step_and_file_without_the_tensorstore_spec(
        partial, tmp_path):
    """An unsealed step whose array chunks are cut to 10 bytes reaches orbax, whose error
    carries a ~1,000-character TensorStore spec; the warning keeps the step, the file,
    the array and the reason."""
    run = copy_run(partial, tmp_path)
    (run / "checkpoints" / "20" / "sha256.json").unlink(missing_ok=True)
    for f in glob.glob(f"{run}/checkpoints/20/state/ocdbt.process_0/d/*"):
        with open(f, "r+b") as fh:
            fh.truncate(10)
    logs = []
    train.train_and_evaluate(small_config(), str(run), stop_after_steps=20, log=logs.append)
    warning = next(l for l in logs if l.startswith("warning: cannot read checkpoint"))
    assert warning.startswith(f"warning: cannot read checkpoint step 20 ({run}/checkpoints/20): "
                              f"{run}/checkpoints/20/state/"), warning
    assert re.search(r"is not valid for value of size 10 \(reading [\w.]+/[\d.]+\)$", warning), warning
    assert "tensorstore" not in warning.lower() and len(warning) < 400, warning


def test_export_cli_prints_no_orbax_info_logs_but_keeps_warnings(partial, tmp_path):
    run = copy_run(partial, tmp_path)
    (run / "checkpoints" / "20" / "sha256.json").unlink(missing_ok=True)
    p = _cli("jaxquant.export", f"--workdir={run}")
    assert p.returncode == 0, p.stderr
    assert not re.search(r"^I\d{4} ", p.stderr, re.M), p.stderr[:2000]
    assert "Given directory is read only" not in p.stderr and "could not be restored" not in p.stderr
    assert f"{run}/checkpoints/20 has no sha256.json" in p.stderr  # a real warning stays
    assert "wrote" in p.stdout


# ------------------------------------------------------------------ the export manifest

def write_small_export(directory):
    params = {"dense": {"kernel": np.array([[1.0, -1.0, 1.0, 1.0]] * 20, np.float32),
                        "bias": np.array([0.5, -0.25, 0.0, 1.0], np.float32)},
              "other": {"kernel": np.array([[-1.0, 1.0, 1.0, -1.0]] * 20, np.float32)}}
    E.write(str(directory), params, None, None, config={"model": {"name": "mlp"}}, info={"step": 3})
    return json.load(open(directory / E.MANIFEST))


def edit_manifest(directory, edit):
    m = json.load(open(directory / E.MANIFEST))
    edit(m)
    (directory / E.MANIFEST).write_text(json.dumps(m))


def _swap_codebook(m):
    t = next(t for t in m["tensors"] if t["encoding"] == "packed")
    t["codebook"] = t["codebook"][::-1]


def _swap_offsets(m):
    a, b = [t for t in m["tensors"] if t["name"].endswith("kernel")]
    a["offset"], b["offset"] = b["offset"], a["offset"]


@pytest.mark.parametrize("edit", [_swap_codebook, _swap_offsets], ids=["codebook", "offsets"])
def test_an_edited_manifest_fails_its_sha256(tmp_path, edit):
    write_small_export(tmp_path)
    E.load(str(tmp_path))  # intact
    edit_manifest(tmp_path, edit)
    with pytest.raises(E.ExportError, match=re.escape(f"{tmp_path / E.MANIFEST} does not match its "
                                                      f"manifest_sha256")):
        E.load(str(tmp_path))


def test_the_manifest_sha256_is_that_of_its_canonical_json(tmp_path):
    m = write_small_export(tmp_path)
    body = {k: v for k, v in m.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert m["manifest_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert m["blob_sha256"] == hashlib.sha256((tmp_path / E.BLOB).read_bytes()).hexdigest()


def _set(path, value):
    def edit(m):
        node = m
        for k in path[:-1]:
            node = node[k]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


@pytest.mark.parametrize("path, value, words", [
    (("config",), 5, "field 'config' is 5; it must be an object"),
    (("tensors",), KeyError, "field 'tensors' is missing; it must be a list"),
    (("tensors",), "abc", "field 'tensors' is 'abc'"),
    (("info",), [], "field 'info' is []"),
    (("info", "step"), "3", "field 'info.step' is '3'"),
    (("blob",), "../weights.bin", "field 'blob' is '../weights.bin'; it must be a file name"),
    (("blob_bytes",), "240", "field 'blob_bytes' is '240'"),
    (("blob_sha256",), None, "field 'blob_sha256' is None"),
    (("tensors", 0), 3, "field 'tensors[0]' is 3; it must be an object"),
    (("tensors", 0, "offset"), -1, "field 'tensors[0].offset' is -1; it must be an integer >= 0"),
    (("tensors", 1, "offset"), 10**6, "field 'tensors[1].offset' is 1000000; it must be such that"),
    (("tensors", 0, "shape"), "2x2", "field 'tensors[0].shape' is '2x2'"),
    (("tensors", 0, "dtype"), "banana", "field 'tensors[0].dtype' is 'banana'"),
    (("tensors", 0, "collection"), "weights", "field 'tensors[0].collection' is 'weights'"),
    (("tensors", 0, "bits"), True, "field 'tensors[0].bits' is True"),
    (("tensors", 0, "path"), KeyError, "field 'tensors[0].path' is missing"),
])
def test_a_manifest_of_a_bad_structure_is_an_export_error_naming_the_field(tmp_path, path, value, words):
    write_small_export(tmp_path)
    edit_manifest(tmp_path, _set(path, value))
    with pytest.raises(E.ExportError) as e:
        E.load(str(tmp_path))
    assert f"{tmp_path / E.MANIFEST}: {words}" in str(e.value), str(e.value)


def test_a_packed_tensor_without_a_codebook_is_named(tmp_path):
    m = write_small_export(tmp_path)
    i = next(i for i, t in enumerate(m["tensors"]) if t["encoding"] == "packed")
    edit_manifest(tmp_path, _set(("tensors", i, "codebook"), KeyError))
    with pytest.raises(E.ExportError, match=re.escape(f"field 'tensors[{i}].codebook' is missing")):
        E.load(str(tmp_path))


def test_a_run_config_without_its_sections_cannot_be_evaluated(tmp_path):
    write_small_export(tmp_path)  # config {"model": {...}}: no dataset
    with pytest.raises(E.ExportError, match="field 'config.dataset' is missing"):
        evaluate.evaluate_export(str(tmp_path))


def test_evaluate_cli_exits_1_when_the_accuracy_differs_and_2_for_a_bad_manifest(partial, tmp_path):
    """1 when the accuracy differs from the recorded one (an impossible 200% here), 2 (no
    traceback) for a manifest whose config is not an object. (A match exits 0:
    test_export_run.test_evaluate_cli_reports_a_match_and_rejects_a_corrupted_export.)"""
    params, batch_stats, manifest = E.load(E.export_run(str(partial), str(tmp_path / "source")))
    out = tmp_path / "other"
    E.write(str(out), params, batch_stats, None, config=manifest["config"],
            info=dict(manifest["info"], training_test_accuracy=2.0))
    p = _cli("jaxquant.evaluate", f"--export={out}")
    assert p.returncode == 1, p.stderr
    assert "DIFFERS FROM the in-training 200.00%" in p.stdout
    assert "differs from the 2.0 recorded when it was exported" in p.stderr and "Traceback" not in p.stderr
    edit_manifest(out, _set(("config",), 5))
    p = _cli("jaxquant.evaluate", f"--export={out}")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{out / E.MANIFEST}: field 'config' is 5" in p.stderr

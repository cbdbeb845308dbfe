"""The workdir rules (issue 18): --overwrite never destroys data, a resume never mixes
runs, damaged run files never go unnoticed, and user mistakes about the workdir exit 2
without a traceback, before any data is loaded."""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, load_config
from jaxquant import checkpoints, data, train, workdir as workdir_lib
from jaxquant.errors import ConfigError, UserError
from jaxquant.metrics import read_metrics
from jaxquant.ptq import runner as ldnq_runner

quiet = lambda *_: None  # noqa: E731

# fp_digits, a 16-unit MLP, 40 steps of batch 256 (5 steps per epoch of the 1437
# digits training images), a record every 5 steps, checkpoints every 10
ARGS = ("--config.model.features=(16,)", "--config.train.batch_size=256",
        "--config.train.steps=40", "--config.train.log_every_steps=5",
        "--config.train.eval_every_steps=10", "--config.train.checkpoint_every_steps=10",
        "--config.train.keep_checkpoints=3")


def tiny(**train_kw):
    """The config `ARGS` gives on the command line."""
    c = load_config("fp_digits")
    c.model.features = (16,)
    c.train.update(**{**dict(steps=40, batch_size=256, log_every_steps=5, eval_every_steps=10,
                             checkpoint_every_steps=10, keep_checkpoints=3), **train_kw})
    return c


def cli(*args, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "jaxquant.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def snapshot(root) -> dict:
    """{relative path: bytes} of every file under `root` (the lock file left out)."""
    out = {}
    for path in glob.glob(os.path.join(str(root), "**"), recursive=True):
        if os.path.isfile(path) and not path.endswith(workdir_lib.LOCK):
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run of `tiny()` stopped at step 20 (checkpoints 10 and 20), and the same run
    uninterrupted to step 40 (the reference)."""
    base = tmp_path_factory.mktemp("runs")
    train.train_and_evaluate(tiny(), str(base / "part"), stop_after_steps=20, log=quiet)
    full = train.train_and_evaluate(tiny(), str(base / "full"), log=quiet)
    return base, full


def copy_part(runs, tmp_path):
    shutil.copytree(runs[0] / "part", tmp_path / "run")
    return tmp_path / "run"


def no_data_loading(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("data was loaded before the workdir was checked")
    monkeypatch.setattr(data, "load", refuse)


# ------------------------------------------------------------------ item 1, 2: --overwrite

def test_overwrite_with_an_invalid_config_exits_2_and_keeps_the_run(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    before = snapshot(run)
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(run), *ARGS, "--overwrite",
              "--config.train.batch_size=-5")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "config.train.batch_size" in out.stderr
    assert snapshot(run) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run_naming_its_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "thesis.tex").write_text("x")
    (d / "figures").mkdir()
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(d), "--overwrite")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "thesis.tex" in out.stderr and "figures/" in out.stderr
    assert sorted(os.listdir(d)) == ["figures", "thesis.tex"] and (d / "thesis.tex").read_text() == "x"


@pytest.mark.parametrize("foreign", ["notes.txt", "checkpoints/model.pt", "tensorboard/mine.csv",
                                     "summary.txt/"])
def test_overwrite_refuses_a_run_with_foreign_files_beside_it(runs, tmp_path, foreign, monkeypatch):
    run = copy_part(runs, tmp_path)
    if foreign.endswith("/"):  # a directory where the run keeps a file
        os.remove(run / foreign[:-1])
        (run / foreign).mkdir()
    else:
        (run / foreign).write_text("mine")
    before = snapshot(run)
    no_data_loading(monkeypatch)
    with pytest.raises(workdir_lib.WorkdirError, match="not only a jaxquant run") as e:
        train.run(tiny(), str(run), overwrite=True)
    assert foreign in str(e.value) and snapshot(run) == before


def test_overwrite_replaces_a_run_of_another_config_and_says_what_it_replaced(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    (run / "compare.log").write_text("compare's own log")
    logs = []
    other = tiny(steps=10)
    other.seed = 7
    result = train.train_and_evaluate(other, str(run), overwrite=True, log=logs.append)
    said = [l for l in logs if l.startswith("--overwrite: replaced the run in")]
    assert said and "method 'fp'" in said[0] and "checkpoints at steps 10, 20" in said[0], logs
    assert result["step"] == 10 and not result["preempted"]
    assert json.loads((run / "config.json").read_text())["seed"] == 7
    assert [r["step"] for r in read_metrics(str(run))] == [5, 10]  # nothing of the old run
    ckpt = checkpoints.Checkpointer(str(run))
    assert ckpt.all_steps() == [10]
    ckpt.close()
    assert (run / "compare.log").read_text() == "compare's own log"


def test_ldnq_runner_shares_the_overwrite_rules(tmp_path, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    (d / "thesis.tex").write_text("x")
    c = load_config("ldnq_digits")
    c.init_checkpoint = str(tmp_path / "fp")
    no_data_loading(monkeypatch)
    with pytest.raises(workdir_lib.WorkdirError, match="thesis.tex"):
        ldnq_runner.run(c, str(d), overwrite=True, log=quiet)
    assert os.listdir(d) == ["thesis.tex"]


def test_a_folder_with_foreign_files_and_no_run_is_not_written_into(tmp_path, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    (d / "summary.txt").write_text("my summary")  # a name the run would overwrite
    (d / "thesis.tex").write_text("x")
    no_data_loading(monkeypatch)
    with pytest.raises(workdir_lib.WorkdirError, match="is not a jaxquant run: it holds thesis.tex"):
        train.run(tiny(), str(d))
    assert sorted(os.listdir(d)) == ["summary.txt", "thesis.tex"]


# ------------------------------------------------------------------ item 3, 4: resume

def test_resume_with_trajectory_changes_is_refused_with_a_diff_and_keeps_config_json(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    before = snapshot(run)
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(run), *ARGS,
              "--config.optimizer.lr=0.05", "--config.train.batch_size=32", "--config.seed=3")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    for words in ("config.optimizer.lr: 0.003 -> 0.05", "config.train.batch_size: 256 -> 32",
                  "config.seed: 0 -> 3", "--overwrite", "another --workdir", "checkpoints up to step 20"):
        assert words in out.stderr, (words, out.stderr)
    assert "model or method" not in out.stderr
    assert snapshot(run) == before  # config.json (and everything else) as it was


@pytest.mark.parametrize("path, value", [
    ("seed", 1), ("init_checkpoint", "/elsewhere"), ("optimizer.lr", 0.1), ("optimizer.name", "sgd"),
    ("optimizer.b2", 0.99), ("schedule.kind", "constant"), ("schedule.warmup", 2),
    ("train.batch_size", 128), ("train.steps", 80), ("train.epochs", 3), ("dataset.augment", "none"),
    ("dataset.validation", 100), ("model.features", (32,)), ("method.name", "ste"),
    ("quant.exclude", ("head/.*",)),
])
def test_every_trajectory_field_blocks_a_resume(runs, path, value):
    c = tiny()
    section, _, key = path.rpartition(".")
    (c[section] if section else c)[key] = value
    with pytest.raises(workdir_lib.WorkdirError) as e:
        workdir_lib.plan(str(runs[0] / "part"), c)
    assert f"config.{path}: " in str(e.value)


@pytest.mark.parametrize("path, value", [
    ("train.log_every_steps", 2), ("train.eval_every_steps", 20), ("train.eval_batch_size", 64),
    ("train.checkpoint_every_steps", 5), ("train.keep_checkpoints", 1), ("train.select_best", True),
    ("train.on_nonfinite", "skip"), ("dataset.data_dir", "/moved"),
])
def test_fields_that_cannot_alter_training_may_change_on_resume(runs, path, value):
    c = tiny()
    section, key = path.split(".")
    old = c[section][key]
    c[section][key] = value
    p = workdir_lib.plan(str(runs[0] / "part"), c)
    assert p.action == "resume" and p.changes == [(path, old, value)]


def test_a_field_added_after_the_run_started_does_not_block_its_resume(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    old = json.loads((run / "config.json").read_text())
    del old["train"]["on_nonfinite"]  # a config.json written before the field existed
    (run / "config.json").write_text(json.dumps(old))
    assert workdir_lib.plan(str(run), tiny()).action == "resume"


@pytest.mark.parametrize("name", ["bc_digits", "md_tanh_s_digits", "dorefa_cifar10_resnet20"])
def test_method_and_model_keys_at_their_defaults_do_not_block_a_resume(name):
    """The command line completes config.method/model with every key's default; a run
    started from a notebook (or before that completion) has only the file's keys."""
    from jaxquant.config_check import complete_sections
    short = json.loads(load_config(name).to_json_best_effort())
    full = load_config(name)
    complete_sections(full)
    assert set(full.model.keys()) > set(short["model"])  # keys the file left at their defaults
    assert workdir_lib.config_changes(short, full) == []
    full.method.name = "ste"
    assert ("method.name", short["method"]["name"], "ste") in workdir_lib.config_changes(short, full)


def test_accepted_changes_are_recorded_and_the_run_ends_as_an_uninterrupted_one(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    logs = []
    result = train.train_and_evaluate(tiny(eval_batch_size=100, keep_checkpoints=2), str(run),
                                      log=logs.append)
    assert any("train.eval_batch_size: 1000 -> 100" in l for l in logs)
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["eval_batch_size"] == 100 and saved["train"]["keep_checkpoints"] == 2
    (history,) = [json.loads(l) for l in (run / "config_history.jsonl").read_text().splitlines()]
    assert history["resumed_at_step"] == 20
    assert history["changes"] == {"train.eval_batch_size": [1000, 100], "train.keep_checkpoints": [3, 2]}
    assert result["test_accuracy"] == runs[1]["test_accuracy"]
    got, _, _ = checkpoints.load_weights(str(run))
    ref, _, _ = checkpoints.load_weights(str(runs[0] / "full"))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)))


def test_a_refused_resume_after_unreadable_checkpoints_keeps_config_json(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    for f in glob.glob(f"{run}/checkpoints/*/state/**/d/*", recursive=True):
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    config_json = (run / "config.json").read_text()
    with pytest.raises(workdir_lib.WorkdirError) as e:
        train.train_and_evaluate(tiny(eval_batch_size=100), str(run), log=quiet)
    assert "model or method" not in str(e.value) and "damaged" in str(e.value)
    assert (run / "config.json").read_text() == config_json
    assert not (run / "config_history.jsonl").exists()


# ------------------------------------------------------------------ item 7: metrics and meta

def _interrupt_at(monkeypatch, step):
    """SIGTERM to this process while the trainer fetches the batch of `step`."""
    get = train._Batches.get

    def get_and_signal(self, s):
        if s == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return get(self, s)
    monkeypatch.setattr(train._Batches, "get", get_and_signal)


def test_records_after_a_resume_average_the_same_steps_as_an_uninterrupted_run(runs, tmp_path,
                                                                                monkeypatch):
    _interrupt_at(monkeypatch, 11)  # mid-window: records at 10 and 15
    first = train.train_and_evaluate(tiny(), str(tmp_path / "run"), log=quiet)
    assert first["preempted"] and first["step"] == 12
    monkeypatch.undo()
    train.train_and_evaluate(tiny(), str(tmp_path / "run"), log=quiet)
    got, ref = read_metrics(str(tmp_path / "run")), read_metrics(str(runs[0] / "full"))
    assert [r["step"] for r in got] == [r["step"] for r in ref] == [5, 10, 15, 20, 25, 30, 35, 40]
    for a, b in zip(got, ref):
        for key in ("train_loss", "train_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), (a["step"], key)


def _meta_file(run, step):
    return run / "checkpoints" / str(step) / "meta" / "metadata"


@pytest.mark.parametrize("edit", [dict(test_at_best_val=5.0), dict(best_val_accuracy=-0.5),
                                  dict(best_step=999), dict(best_step="10"),
                                  dict(pending=[{"train_loss": "x"}])])
def test_a_tampered_checkpoint_meta_is_set_aside_like_an_unreadable_checkpoint(runs, tmp_path, edit):
    """Values out of range, even with checksums that match them."""
    run = copy_part(runs, tmp_path)
    meta = json.loads(_meta_file(run, 20).read_text())
    _meta_file(run, 20).write_text(json.dumps({**meta, **edit}))
    checkpoints.seal(str(run / "checkpoints" / "20"))  # a tamper the checksums cannot see
    logs = []
    ckpt = checkpoints.Checkpointer(str(run), keep=3)
    state = train.init_state(train.build_experiment(tiny()))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    try:
        restored, meta10 = train._restore_latest(ckpt, abstract, logs.append)
    finally:
        ckpt.close()
    assert int(restored["step"]) == 10 and 0 <= meta10["test_at_best_val"] <= 1
    key = next(iter(edit))
    assert f"{run}/checkpoints/20" in logs[0] and f"meta {key}" in logs[0], logs
    assert os.path.isdir(run / "checkpoints_unreadable" / "20")


# ------------------------------------------------------------------ item 8, 9: leftovers

def test_a_truncated_last_metrics_line_is_dropped_with_a_warning(runs, tmp_path, capsys):
    run = copy_part(runs, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "train_lo')  # a run killed while writing a record
    result = train.train_and_evaluate(tiny(), str(run), log=quiet)
    assert result["step"] == 40
    assert "metrics.jsonl, line 5: not a metrics record" in capsys.readouterr().err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_read_metrics_drops_bad_lines_naming_them(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1.0}\n[1, 2]\n{"step": 2, "a": 2.0}\n{"step": 3')
    warnings = []
    assert read_metrics(str(path), warn=warnings.append) == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}]
    assert len(warnings) == 2 and "line 2" in warnings[0]
    assert "line 4" in warnings[1] and "stopped while writing" in warnings[1]


def test_a_run_preempted_before_its_first_checkpoint_simply_starts(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(tiny(steps=10).to_json_best_effort(indent=2))
    (run / "metrics.jsonl").write_text('{"step": 5, "train_loss": 99.0}\n')
    (run / "summary.txt").write_text("old")
    result = train.train_and_evaluate(tiny(steps=10), str(run), log=quiet)
    assert result["step"] == 10 and not result["preempted"]
    assert all(r["train_loss"] != 99.0 for r in read_metrics(str(run)))


def test_another_configs_run_without_a_checkpoint_is_still_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    other = tiny()
    other.seed = 5
    (run / "config.json").write_text(other.to_json_best_effort(indent=2))
    with pytest.raises(workdir_lib.WorkdirError, match="no checkpoint yet.*config.seed: 5 -> 0"):
        workdir_lib.plan(str(run), tiny())


# ------------------------------------------------------------------ item 10, 11: checked first

def test_batch_larger_than_the_training_set_is_a_config_error_before_the_workdir(tmp_path):
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "w"),
              "--config.train.batch_size=5000")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "config.train.batch_size=5000" in out.stderr and "1437" in out.stderr
    assert not (tmp_path / "w").exists()


def test_batch_larger_than_the_training_set_names_the_validation_carve_out():
    c = tiny(batch_size=1400)
    c.dataset.validation = 100
    with pytest.raises(ConfigError, match=r"1400 .*\(1337 examples after config.dataset.validation=100\)"):
        train.build_experiment(c)


def test_workdir_that_is_a_file_exits_2_from_the_command_line(tmp_path):
    (tmp_path / "f").write_text("x")
    out = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "f"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "is a file" in out.stderr and (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("case", ["file", "under_file", "empty", "blank", "read_only", "proc"])
def test_unusable_workdirs_are_refused_before_loading_data(tmp_path, monkeypatch, case):
    (tmp_path / "f").write_text("x")
    workdir = dict(file=str(tmp_path / "f"), under_file=str(tmp_path / "f" / "run"), empty="",
                   blank="  ", read_only=str(tmp_path / "ro" / "run"), proc="/proc/1/run")[case]
    words = dict(file="is a file", under_file="which is a file", empty="is empty", blank="is empty",
                 read_only="not writable", proc="not writable")[case]
    if case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (tmp_path / "ro").mkdir(mode=0o555)
    no_data_loading(monkeypatch)
    with pytest.raises(workdir_lib.WorkdirError, match=words):
        train.run(tiny(), workdir)


# ------------------------------------------------------------------ item 12: config files

def broken_config(tmp_path, body):
    path = tmp_path / "broken.py"
    path.write_text("from jaxquant.config import base_config\n\n\ndef get_config():\n"
                    f"    c = base_config()\n    {body}\n    return c\n")
    return path


def test_a_config_file_raising_exits_2_naming_file_line_and_error(tmp_path):
    path = broken_config(tmp_path, "c.seed = undefined_name")
    out = cli("--config", str(path), "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"{path}, line 6" in out.stderr
    assert "NameError: name 'undefined_name' is not defined" in out.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("body, error", [
    ("import no_such_module_xyz", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("raise RuntimeError('half-edited')", "RuntimeError: half-edited"),
    ("c.model = 1 / 0", "ZeroDivisionError: division by zero"),
])
def test_any_exception_of_a_config_file_is_a_user_error(tmp_path, body, error):
    from test_faults import run_main
    path = broken_config(tmp_path, body)
    code, _, err = run_main(["jaxquant.main", "--config", str(path), "--workdir", str(tmp_path / "w")])
    assert code == 2 and "Traceback" not in err
    assert f"{path}, line 6 (in get_config), raised {error}" in err


# ------------------------------------------------------------------ item 14: one run at a time

def test_a_second_run_on_a_locked_workdir_is_refused_naming_the_running_one(runs, tmp_path):
    run = copy_part(runs, tmp_path)
    before = snapshot(run)
    lock = workdir_lib.Lock(str(run))  # this test process is "the running one"
    try:
        out = cli("--config", "configs/fp_digits.py", "--workdir", str(run), *ARGS)
        with pytest.raises(workdir_lib.WorkdirError, match=f"pid {os.getpid()}"):
            train.train_and_evaluate(tiny(), str(run), log=quiet)
    finally:
        lock.release()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"in use by another jaxquant run (pid {os.getpid()} on host {socket.gethostname()}, started " \
        in out.stderr
    assert snapshot(run) == before
    assert workdir_lib.plan(str(run), tiny()).action == "resume"  # free again


def test_the_lock_is_held_while_training_and_released_after(tmp_path, monkeypatch):
    seen = []
    get = train._Batches.get

    def get_and_try(self, s):
        if s == 3:
            try:
                workdir_lib.Lock(str(tmp_path / "run"))
            except workdir_lib.WorkdirError as e:
                seen.append(str(e))
        return get(self, s)
    monkeypatch.setattr(train._Batches, "get", get_and_try)
    train.train_and_evaluate(tiny(steps=5), str(tmp_path / "run"), log=quiet)
    assert len(seen) == 1 and f"pid {os.getpid()}" in seen[0]
    workdir_lib.Lock(str(tmp_path / "run")).release()  # free once the run returned


def test_workdir_errors_are_user_errors():
    assert issubclass(workdir_lib.WorkdirError, UserError) and train.WorkdirError is workdir_lib.WorkdirError


@pytest.mark.slow
def test_two_command_lines_on_one_workdir_the_second_is_refused(tmp_path):
    """The real race: a training command holds the workdir, a second one is refused
    naming it, and the first, stopped by SIGTERM, leaves well-formed metrics."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PYTHONPATH=REPO)
    first = subprocess.Popen([sys.executable, "-m", "jaxquant.main", "--config", "configs/fp_digits.py",
                              "--workdir", str(tmp_path / "run"), *ARGS[:2], "--config.train.steps=5000",
                              "--config.train.log_every_steps=50"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in first.stdout:
            if line.startswith("step "):
                break
        second = cli("--config", "configs/fp_digits.py", "--workdir", str(tmp_path / "run"), *ARGS[:2],
                     "--config.train.steps=5000", "--config.train.log_every_steps=50")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=300)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert f"in use by another jaxquant run (pid {first.pid} on host {socket.gethostname()}" in second.stderr
    assert first.returncode == 128 + signal.SIGTERM
    assert all(json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())

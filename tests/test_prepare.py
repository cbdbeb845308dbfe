"""`python -m jaxquant.data.prepare`: download (from a local server), checksum, resume, conversion.

No external network: tiny archives in the official formats are served from
http.server on 127.0.0.1 (with Range support) or read through file:// URLs, and
the module's URL/checksum table is pointed at them.
"""
import gzip
import hashlib
import http.server
import io
import os
import re
import subprocess
import sys
import tarfile
import threading
import zipfile

import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from jaxquant import data
from jaxquant.data import prepare
from jaxquant.data.dataset import DataError

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cfg(name, data_dir="", validation=0):
    return ml_collections.ConfigDict(dict(name=name, data_dir=str(data_dir), validation=validation, augment=""))


@pytest.fixture(autouse=True)
def _isolated_data_dirs(tmp_path, monkeypatch):
    """No $JAXQUANT_DATA_DIR and a private home, so the default data dir is empty."""
    monkeypatch.delenv("JAXQUANT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------- archives in the official formats

def _images(n, seed):
    return np.random.RandomState(seed).randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)


def _cifar_records(images, labels):
    """The CIFAR binary layout as the dataset page states it: per image the label byte(s), then
    the 1024 red, 1024 green and 1024 blue values, each plane row-major."""
    out = bytearray()
    for image, label in zip(images, labels):
        out += bytes(label)
        for c in range(3):
            out += image[:, :, c].tobytes()
    return bytes(out)


def _tar_gz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def cifar10_archive():
    """cifar-10-binary.tar.gz with 20 images: 5 train batches of 3, a test batch of 5."""
    images = _images(20, 0)
    labels = np.arange(20) % 10
    members = {f"cifar-10-batches-bin/data_batch_{b + 1}.bin":
               _cifar_records(images[3 * b:3 * b + 3], [[l] for l in labels[3 * b:3 * b + 3]])
               for b in range(5)}
    members["cifar-10-batches-bin/test_batch.bin"] = _cifar_records(images[15:], [[l] for l in labels[15:]])
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    return _tar_gz(members), images, labels


def cifar100_archive():
    images = _images(6, 1)
    coarse, fine = [0, 1, 2, 3, 4, 19], [99, 0, 42, 7, 55, 3]
    members = {"cifar-100-binary/train.bin": _cifar_records(images[:4], list(zip(coarse[:4], fine[:4]))),
               "cifar-100-binary/test.bin": _cifar_records(images[4:], list(zip(coarse[4:], fine[4:]))),
               "cifar-100-binary/fine_label_names.txt": "\n".join(f"c{i}" for i in range(100)).encode(),
               "cifar-100-binary/coarse_label_names.txt": "\n".join(f"s{i}" for i in range(20)).encode()}
    return _tar_gz(members), images, np.array(fine)


def _idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def fashion_mnist_files():
    rng = np.random.RandomState(2)
    train, test = rng.randint(0, 256, (6, 28, 28)), rng.randint(0, 256, (4, 28, 28))
    train_labels, test_labels = np.array([9, 0, 0, 3, 0, 2]), np.array([1, 2, 3, 4])
    files = {"train-images-idx3-ubyte.gz": _idx(train), "train-labels-idx1-ubyte.gz": _idx(train_labels),
             "t10k-images-idx3-ubyte.gz": _idx(test), "t10k-labels-idx1-ubyte.gz": _idx(test_labels)}
    return files, (train, train_labels, test, test_labels)


def tiny_imagenet_zip():
    """tiny-imagenet-200.zip in the official layout, 2 classes, 8x8 images."""
    buf = io.BytesIO()
    wnids = ["n02", "n01"]

    def jpeg(value):
        out = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(out, format="PNG")
        return out.getvalue()

    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        for k, w in enumerate(wnids):
            for i in range(2):
                z.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{i}.png", jpeg(10 * k + i))
        z.writestr("tiny-imagenet-200/val/images/val_0.png", jpeg(200))
        z.writestr("tiny-imagenet-200/val/images/val_1.png", jpeg(210))
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "val_0.png\tn01\t0\t0\t8\t8\n"
                                                                "val_1.png\tn02\t0\t0\t8\t8\n")
        z.writestr("tiny-imagenet-200/test/images/test_0.png", jpeg(0))
    return buf.getvalue()


def md5(payload):
    return hashlib.md5(payload).hexdigest()


# ---------------------------------------------------------------- a local HTTP server with Range support

class Server:
    """Serves `files` ({name: bytes}) on 127.0.0.1; records (name, Range header, status) per request.

    `truncate[name] = n` makes the next response for `name` stop after n body bytes (the
    connection closes short of its Content-Length); `ignore_range` answers 200 to everything."""

    def __init__(self, files):
        self.files, self.requests, self.truncate, self.ignore_range = dict(files), [], {}, False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/").split("/")[-1]
                range_header = self.headers.get("Range")
                if name not in server.files:
                    server.requests.append((name, range_header, 404))
                    self.send_error(404)
                    return
                body, start, status = server.files[name], 0, 200
                if range_header and not server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    if start >= len(body):
                        server.requests.append((name, range_header, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    status = 206
                server.requests.append((name, range_header, status))
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                cut = server.truncate.pop(name, None)
                self.wfile.write(payload if cut is None else payload[:cut])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name=""):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({})
    yield s
    s.close()


def point_at(monkeypatch, name, urls_md5s):
    """Replace dataset `name`'s archives in prepare.SOURCES by [(url, md5)]."""
    source = prepare.SOURCES[name]
    archives = tuple(prepare.Archive(u, m) for u, m in urls_md5s)
    monkeypatch.setitem(prepare.SOURCES, name, prepare.dataclasses.replace(source, archives=archives))


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


# ---------------------------------------------------------------- download, convert, load

def test_cifar10_downloads_verifies_and_loads_with_the_right_pixels_and_labels(server, monkeypatch, tmp_path):
    archive, images, labels = cifar10_archive()
    server.files["cifar-10-binary.tar.gz"] = archive
    point_at(monkeypatch, "cifar10", [(server.url("cifar-10-binary.tar.gz"), md5(archive))])
    root = tmp_path / "data"
    assert prepare.main(["cifar10", "--data_dir", str(root)]) == 0
    assert server.requests == [("cifar-10-binary.tar.gz", None, 200)]
    # only the prepared folder is left: the archive and temporary folders are gone
    assert files_under(root) == sorted(f"cifar10-npy/{f}" for f in
                                       ("meta.json", "train_images.npy", "train_labels.npy",
                                        "test_images.npy", "test_labels.npy"))
    d = data.load(cfg("cifar10", data_dir=root))
    assert (len(d.train), len(d.test), d.num_classes, d.image_shape) == (15, 5, 10, (32, 32, 3))
    np.testing.assert_array_equal(d.train.images, images[:15])   # batches 1..5 in order
    np.testing.assert_array_equal(d.test.images, images[15:])
    np.testing.assert_array_equal(d.train.labels, labels[:15])
    np.testing.assert_array_equal(d.test.labels, labels[15:])
    assert d.train.labels.dtype == np.int32 and d.class_names == CIFAR10_NAMES
    assert d.mean == data.CIFAR_MEAN and d.augment == "crop_flip"
    # a second run finds it prepared and downloads nothing
    assert prepare.main(["cifar10", "--data_dir", str(root)]) == 0
    assert len(server.requests) == 1


def test_cifar100_from_a_file_url_keeps_the_fine_label_and_is_found_via_the_environment(monkeypatch, tmp_path):
    archive, images, fine = cifar100_archive()
    path = tmp_path / "cifar-100-binary.tar.gz"
    path.write_bytes(archive)
    point_at(monkeypatch, "cifar100", [(path.as_uri(), md5(archive))])
    root = tmp_path / "env_data"
    monkeypatch.setenv("JAXQUANT_DATA_DIR", str(root))   # prepare writes there without --data_dir
    assert prepare.main(["cifar100", "--keep_archives"]) == 0
    assert (root / "downloads" / "cifar-100-binary.tar.gz").read_bytes() == archive
    d = data.load(cfg("cifar100"))                      # load finds it there too
    assert (len(d.train), len(d.test), d.num_classes) == (4, 2, 100)
    np.testing.assert_array_equal(np.concatenate([d.train.labels, d.test.labels]), fine)
    np.testing.assert_array_equal(d.test.images, images[4:])
    assert d.class_names[99] == "c99"


def test_fashion_mnist_idx_files_are_placed_where_load_reads_them(server, monkeypatch, tmp_path):
    files, (train, train_labels, test, test_labels) = fashion_mnist_files()
    server.files.update(files)
    point_at(monkeypatch, "fashion_mnist", [(server.url(n), md5(b)) for n, b in files.items()])
    root = tmp_path / "data"
    assert prepare.main(["fashion_mnist", "--data_dir", str(root)]) == 0
    assert files_under(root) == sorted(f"fashion-mnist/{n}" for n in files)
    d = data.load(cfg("fashion_mnist", data_dir=root))
    assert d.train.images.shape == (6, 28, 28, 1) and d.test.images.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(d.train.images[..., 0], train)
    np.testing.assert_array_equal(d.train.labels, train_labels)
    np.testing.assert_array_equal(d.test.labels, test_labels)


def test_tiny_imagenet_zip_is_extracted_and_loads_by_name_alone(monkeypatch, tmp_path):
    archive = tiny_imagenet_zip()
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(archive)
    point_at(monkeypatch, "tiny_imagenet", [((tmp_path / "tiny-imagenet-200.zip").as_uri(), md5(archive))])
    assert prepare.main(["tiny_imagenet"]) == 0            # the default data dir, under $HOME
    folder = tmp_path / "home" / ".cache" / "jaxquant" / "datasets" / "tiny-imagenet-200"
    assert (folder / "wnids.txt").is_file()
    d = data.load(cfg("tiny_imagenet"))
    assert (len(d.train), len(d.test), d.num_classes, d.image_shape) == (4, 2, 2, (8, 8, 3))
    assert d.class_names == ("n01", "n02")                 # sorted wnids
    np.testing.assert_array_equal(d.test.labels, [0, 1])   # val_0 is n01, val_1 is n02
    np.testing.assert_array_equal(d.test.images[:, 0, 0, 0], [200, 210])


# ---------------------------------------------------------------- failures and resuming

def test_corrupt_archive_exits_2_in_the_cli_and_leaves_nothing_behind(server, tmp_path):
    archive, _, _ = cifar10_archive()   # a valid format, but not the official file: wrong MD5
    server.files["cifar-10-binary.tar.gz"] = archive
    root = tmp_path / "data"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-m", "jaxquant.data.prepare", "cifar10", "--data_dir", str(root),
                          "--mirror", server.url("mirror")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "checksum mismatch" in out.stderr and prepare.SOURCES["cifar10"].archives[0].md5 in out.stderr
    assert md5(archive) in out.stderr and "Traceback" not in out.stderr
    assert server.requests == [("cifar-10-binary.tar.gz", None, 200)]
    assert files_under(root) == []                       # no .part, no archive, no half-built folder
    # not a terminal: plain progress lines, no carriage returns
    assert "\r" not in out.stderr and re.search(r"cifar-10-binary\.tar\.gz: 100% \(", out.stderr)
    with pytest.raises(DataError, match=r"'cifar10' is not prepared.*jaxquant\.data\.prepare cifar10"):
        data.load(cfg("cifar10", data_dir=root))


def test_interrupted_download_resumes_with_a_range_request_and_appends(server, monkeypatch, tmp_path):
    archive, images, _ = cifar10_archive()
    server.files["cifar-10-binary.tar.gz"] = archive
    server.truncate["cifar-10-binary.tar.gz"] = half = len(archive) // 2
    point_at(monkeypatch, "cifar10", [(server.url("cifar-10-binary.tar.gz"), md5(archive))])
    root = tmp_path / "data"
    with pytest.raises(DataError, match="rerun the same command to resume"):
        prepare.prepare("cifar10", str(root))
    part = root / "downloads" / "cifar-10-binary.tar.gz.part"
    assert part.read_bytes() == archive[:half]
    assert not (root / "cifar10-npy").exists()
    assert prepare.main(["cifar10", "--data_dir", str(root)]) == 0
    assert server.requests == [("cifar-10-binary.tar.gz", None, 200),
                               ("cifar-10-binary.tar.gz", f"bytes={half}-", 206)]
    np.testing.assert_array_equal(data.load(cfg("cifar10", data_dir=root)).test.images, images[15:])
    assert not (root / "downloads").exists()            # the verified archive is deleted once used


def test_a_corrupt_partial_download_is_deleted_not_used_and_the_rerun_starts_over(server, monkeypatch, tmp_path):
    archive, _, _ = cifar10_archive()
    server.files["cifar-10-binary.tar.gz"] = archive
    point_at(monkeypatch, "cifar10", [(server.url("cifar-10-binary.tar.gz"), md5(archive))])
    root = tmp_path / "data"
    (root / "downloads").mkdir(parents=True)
    part = root / "downloads" / "cifar-10-binary.tar.gz.part"
    part.write_bytes(b"\0" * 100)                          # not the archive's first 100 bytes
    with pytest.raises(DataError, match="checksum mismatch"):
        prepare.prepare("cifar10", str(root))
    assert server.requests == [("cifar-10-binary.tar.gz", "bytes=100-", 206)]
    assert not part.exists() and not (root / "cifar10-npy").exists()
    prepare.prepare("cifar10", str(root))
    assert server.requests[-1] == ("cifar-10-binary.tar.gz", None, 200)
    assert (root / "cifar10-npy" / "meta.json").is_file()


def test_a_server_without_range_support_restarts_the_file(server, monkeypatch, tmp_path):
    archive, _, _ = cifar10_archive()
    server.files["cifar-10-binary.tar.gz"] = archive
    server.ignore_range = True
    point_at(monkeypatch, "cifar10", [(server.url("cifar-10-binary.tar.gz"), md5(archive))])
    root = tmp_path / "data"
    (root / "downloads").mkdir(parents=True)
    (root / "downloads" / "cifar-10-binary.tar.gz.part").write_bytes(archive[:50])
    prepare.prepare("cifar10", str(root), keep_archives=True)
    assert server.requests == [("cifar-10-binary.tar.gz", "bytes=50-", 200)]
    assert (root / "downloads" / "cifar-10-binary.tar.gz").read_bytes() == archive


def test_an_archive_without_the_test_batch_is_refused_and_no_folder_is_left(monkeypatch, tmp_path):
    archive, _, _ = cifar10_archive()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if not m.name.endswith("test_batch.bin")}
    broken = _tar_gz(members)
    (tmp_path / "c10.tar.gz").write_bytes(broken)
    point_at(monkeypatch, "cifar10", [((tmp_path / "c10.tar.gz").as_uri(), md5(broken))])
    root = tmp_path / "data"
    with pytest.raises(DataError, match="has no cifar-10-batches-bin/test_batch.bin; it is not the CIFAR binary"):
        prepare.prepare("cifar10", str(root))
    assert files_under(root) == ["downloads/c10.tar.gz"]   # the verified archive only, for a rerun


def test_unknown_dataset_and_imagenet_exit_2_naming_the_valid_ones(capsys):
    assert prepare.main(["cifar11"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'cifar11'" in err and all(n in err for n in prepare.SOURCES)
    assert prepare.main(["imagenet2012"]) == 2
    assert "not a public download" in capsys.readouterr().err


def test_unprepared_cifar100_names_the_prepare_command_before_tfds(tmp_path):
    with pytest.raises(DataError) as e:
        data.load(cfg("cifar100", data_dir=tmp_path))
    msg = str(e.value)
    command = f"python -m jaxquant.data.prepare cifar100 --data_dir {tmp_path}"
    assert command in msg and str(tmp_path / "cifar100-npy") in msg
    assert "tfds" not in msg or msg.index(command) < msg.index("tfds")


def test_missing_tiny_imagenet_path_names_the_prepare_command_for_its_parent(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"jaxquant.data.prepare tiny_imagenet --data_dir {tmp_path}")):
        data.load(cfg(f"tiny_imagenet:{tmp_path / 'tiny-imagenet-200'}"))
    with pytest.raises(DataError, match="'tiny_imagenet' is not prepared"):
        data.load(cfg("tiny_imagenet", data_dir=tmp_path))


# ---------------------------------------------------------------- the headline command

def _main(*args, home):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, HOME=str(home))
    env.pop("JAXQUANT_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "jaxquant.main", "--config", "configs/pmf_cifar100.py", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_headline_command_without_data_exits_2_naming_the_prepare_command(tmp_path):
    out = _main("--workdir", str(tmp_path / "run"), home=tmp_path / "home")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error: dataset 'cifar100' is not prepared" in out.stderr and "Traceback" not in out.stderr
    assert "python -m jaxquant.data.prepare cifar100" in out.stderr


@pytest.mark.slow  # compiles and runs the binary ResNet-18 of the paper config for 2 steps
def test_headline_command_trains_on_prepared_cifar100(monkeypatch, tmp_path):
    archive, _, _ = cifar100_archive()
    (tmp_path / "c100.tar.gz").write_bytes(archive)
    point_at(monkeypatch, "cifar100", [((tmp_path / "c100.tar.gz").as_uri(), md5(archive))])
    assert prepare.main(["cifar100", "--data_dir", str(tmp_path / "data")]) == 0
    out = _main("--workdir", str(tmp_path / "run"), f"--config.dataset.data_dir={tmp_path / 'data'}",
                "--config.dataset.validation=0", "--config.train.steps=2", "--config.train.batch_size=2",
                "--config.train.eval_every_steps=2", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compression 32.0x" in out.stdout and "test accuracy: " in out.stdout

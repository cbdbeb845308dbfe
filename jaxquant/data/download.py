"""Resumable, checksummed downloads of public dataset archives (stdlib only, no TensorFlow).

`fetch(url, path, md5)` leaves at `path` a file whose MD5 is `md5`, or raises
`DownloadError`:
- bytes arrive in `path + ".part"`; an interrupted download keeps them, and the
  next call asks the server for the rest (HTTP `Range: bytes=<size>-`) and appends
  (a server that ignores the range answers 200 and the file starts over);
- the finished `.part` is renamed to `path` only after its MD5 matches; a
  mismatch deletes it, so a corrupt file is never used nor resumed;
- an existing `path` is checked again before it is used (and deleted if it no
  longer matches).
`http(s)://` and `file://` URLs are supported. Progress goes to stderr: a tqdm bar
when stderr is a terminal, else one plain line per 10% (no carriage returns).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from jaxquant.data.dataset import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "jaxquant-prepare"


class DownloadError(DataError):
    """A download failed (network, HTTP status, checksum); the message says what to do."""


def md5_of(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, path: str, md5: str, label: Optional[str] = None) -> str:
    """Download `url` to `path` (resuming `path.part`) and verify its MD5; returns `path`."""
    label = label or os.path.basename(path)
    if os.path.isfile(path):
        if md5_of(path) == md5:
            print(f"{label}: already downloaded, checksum OK ({path})", file=sys.stderr)
            return path
        print(f"{label}: {path} does not match the published checksum; downloading it again",
              file=sys.stderr)
        os.remove(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    try:
        _transfer(url, part, label)
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        kept = os.path.getsize(part) if os.path.isfile(part) else 0
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"downloading {url} failed ({type(e).__name__}: {reason}). "
                            + (f"The {kept:,} bytes received are kept in {part}; rerun the same "
                               f"command to resume." if kept else "Check the network and rerun.")) from e
    got = md5_of(part)
    if got != md5:
        os.remove(part)
        raise DownloadError(f"checksum mismatch for {url}: the downloaded file has MD5 {got}, the "
                            f"published checksum is {md5}. The corrupt download was deleted; rerun to "
                            f"download it again (if it fails again, the server or a proxy alters the "
                            f"file: download it by hand to {path}).")
    os.replace(part, path)
    return path


def _transfer(url: str, part: str, label: str) -> None:
    """Append the missing bytes of `url` to `part` (or rewrite it if the source cannot resume)."""
    offset = os.path.getsize(part) if os.path.isfile(part) else 0
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        source = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        total = os.path.getsize(source)
        if offset > total:
            offset = 0
        with open(source, "rb") as src:
            src.seek(offset)
            _copy(src, part, offset, total, label)
        return
    if scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL {url!r}: only http://, https:// and file:// are supported.")
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left after `offset`: the .part is whole (or foreign)
            return                     # its checksum decides
        raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}.") from e
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206:
            start = response.headers.get("Content-Range", "")
            if not start.startswith(f"bytes {offset}-"):
                raise DownloadError(f"{url}: asked for the bytes from {offset} on, the server sent "
                                    f"{start!r}; delete {part} and rerun.")
        else:  # 200: the whole file again
            if offset:
                print(f"{label}: the server does not resume downloads; starting over", file=sys.stderr)
            offset = 0
        _copy(response, part, offset, offset + length if length is not None else None, label)


def _copy(src, part: str, offset: int, total: Optional[int], label: str) -> None:
    progress = Progress(label, total, offset)
    try:
        with open(part, "ab" if offset else "wb") as out:
            for block in iter(lambda: src.read(CHUNK), b""):
                out.write(block)
                progress.update(len(block))
    finally:
        progress.close()
    if total is not None and progress.done < total:
        raise DownloadError(f"the connection closed after {progress.done:,} of {total:,} bytes of "
                            f"{label}; rerun the same command to resume ({part} is kept).")


class Progress:
    """Bytes done of `total`: a tqdm bar on a terminal, else a plain line per 10%."""

    def __init__(self, label: str, total: Optional[int], initial: int = 0, stream=None):
        self.label, self.total, self.done = label, total, initial
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=label, file=self.stream, dynamic_ncols=True)
        self.step = max(total // 10, 1) if total else 10 * CHUNK
        self.next_line = (initial // self.step + 1) * self.step
        if initial:
            self._line("resuming at")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.done >= self.next_line:
            self._line()
            self.next_line = (self.done // self.step + 1) * self.step

    def _line(self, what: str = "") -> None:
        if self.bar is not None:
            return
        pct = f"{100 * self.done // self.total}% " if self.total else ""
        of = f" of {_mb(self.total)}" if self.total else ""
        print(f"{self.label}: {what + ' ' if what else ''}{pct}({_mb(self.done)}{of})", file=self.stream,
              flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


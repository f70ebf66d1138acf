"""The only file-writing primitives of the toolkit: every long job must never lose finished work.

- `atomic_write_text` / `atomic_write_json`: a file is either its old or its new content, never a torn mix (write a
  temp file in the same folder, fsync, rename over the target);
- `atomic_dir`: a folder (a checkpoint, `best/`, a converted model) is built under a temp name and swapped in; the
  previous version is kept as `.NAME.old` until the new one is in place, and `recover_dir` puts it back when a
  crash fell between the two renames;
- `append_jsonl` / `read_jsonl`: result and metric logs are appended and flushed row by row, so an interruption
  loses at most the row being written; readers drop a torn row, and `rewrite_jsonl` replaces a log atomically when
  rows must go (a repair, or steps lost with an interruption).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, IO, Iterable, Iterator


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # e.g. a full disk: say which file, keep its previous version
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, f"{path}: not written ({err.strerror or err}); its previous version is "
                                 "unchanged") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj, indent: int | None = 1, ensure_ascii: bool = True) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path):
    """The JSON document of `path`; a file that does not parse is an error naming it (records and configs are
    edited by hand, and a bare JSONDecodeError does not say which of a run's files is broken)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno} column {err.colno})") from err


def setting_changes(saved: dict, wanted: dict) -> str:
    """`name: saved, now wanted` for each of `wanted`'s settings that `saved` (what a folder records it was made
    under) holds with another value or lacks; empty when none differ.  One wording for every job that refuses to
    mix its work with a folder of other settings; names as the command line spells them."""
    return ", ".join(f"{name.replace('_', '-')}: {saved.get(name)!r}, now {value!r}"
                     for name, value in wanted.items() if saved.get(name) != value)


def _old(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover_dir(final: str | Path) -> Path:
    """A crash between moving the old version aside and moving the new one in left only `.NAME.old`: put it back."""
    final = Path(final)
    old = _old(final)
    if not final.exists() and old.is_dir():
        old.rename(final)
    return final


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `final`; when the block ends without error it replaces `final` (the old version
    stays complete under `.NAME.old` until the new one is in place).  On error the temp folder is removed and
    `final` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def replace_dir(new: Path, final: Path) -> None:
    """Swap the complete folder `new` in as `final`; the old version stays under `.NAME.old` until then."""
    final = recover_dir(final)
    old = _old(final)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def build_dir_once(final: str | Path, build: Callable[[Path], None]) -> Path:
    """`final` built by `build(tmp)` if it does not exist yet; a concurrent builder that finished first wins and
    this build is discarded (model conversions: every process may try, one copy stays)."""
    final = Path(final)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class FolderInUseError(RuntimeError):
    """Another live process works in this output folder."""


LOCK = ".lock"


@contextmanager
def exclusive(folder: str | Path) -> Iterator[Path]:
    """Hold `folder` for this process: a second process that tries gets `FolderInUseError` naming the holder.  The
    lock is an `flock` on `folder/.lock`, which the kernel releases when its holder dies, so a lock left by a
    killed run never blocks: the next run takes it over and says so.  (flock is local to a machine: two machines
    sharing the folder over NFS are not kept apart.)"""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 300).decode(errors="replace").strip() or "another process"
            raise FolderInUseError(f"{folder} is in use by {holder}: wait for it to finish, or use another output "
                                   "folder") from None
        previous = os.read(fd, 300).decode(errors="replace").strip()
        if previous:
            print(f"{folder}: taking over from {previous}, which stopped without releasing it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)  # released cleanly: the next holder has nothing to take over
    finally:
        os.close(fd)


def append_jsonl(f: IO[str], rows: Iterable[dict]) -> None:
    """Write rows (one JSON object a line, UTF-8 kept readable) and flush them to the OS.  A failed write (e.g. a
    full disk) names the file; the rows before stay readable (a torn last row is dropped by the readers).  The
    bytes go straight to the file descriptor, so a failed write leaves nothing in `f`'s buffer for its close to
    fail on again (which would replace this error with one that names no file)."""
    data = memoryview("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
    try:
        f.flush()  # what was written through `f` before goes first
        while data:
            data = data[os.write(f.fileno(), data):]
    except OSError as err:
        raise OSError(err.errno, f"{f.name}: rows not written ({err.strerror or err}); the rows before them are "
                                 "kept, and a rerun continues from them") from err


def read_jsonl(path: str | Path, keep: Callable[[dict], bool] | None = None) -> tuple[list[dict], bool]:
    """(rows, clean) of a JSONL log: rows that parse (and pass `keep`), and whether every line did.  A row torn by
    an interruption (no newline, or not JSON) is left out."""
    path = Path(path)
    if not path.exists():
        return [], True
    rows, clean = [], True
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line) if line.endswith("\n") else None
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and (keep is None or keep(row)):
                rows.append(row)
            else:
                clean = False
    return rows, clean


def rewrite_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Replace a JSONL log by `rows`, atomically."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def repair_jsonl(path: str | Path, keep: Callable[[dict], bool] | None = None) -> list[dict]:
    """Rows of a log, with torn rows (and rows failing `keep`) removed from the file itself before anyone appends."""
    rows, clean = read_jsonl(path, keep)
    if not clean:
        rewrite_jsonl(path, rows)
    return rows

"""Atomic file and folder writes shared by every layer that saves something (no heavy imports).

A save never leaves a half-written file or folder where a reader looks:

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` write a temporary file in the same folder,
  flush it to disk, then ``os.replace`` it over the target (atomic on POSIX and Windows) and
  flush the folder.
- :func:`atomic_folder` calls ``write(tmp)`` on a fresh temporary folder beside the target and
  swaps it in only after ``write`` returned. Replacing an existing folder takes two renames (old
  folder aside, new folder in); :func:`find_saved_folder` recovers the previous folder if a crash
  fell between them, so a reader always finds a complete save. Every saved folder holds a
  :data:`SAVE_MARKER` file, and an existing folder is only replaced when it is a save (never a
  folder of the user's that happens to be at the target path).

:func:`read_json` and :func:`read_tensors` (defined in :mod:`rag_relax_plugins._io_read`, re-exported
here) read a saved file back; a corrupt or truncated one is a ``ValueError`` naming the file (the
CLI reports those as messages, not tracebacks).

Durability: file contents and folder entries are flushed to disk (``fsync``) before each rename
makes them visible, and the parent folder after it, so a power loss cannot leave a renamed-in
save with empty files. A backup a crash left between the two renames is deleted by the next
successful save of the same folder. A temporary ``.<name>.tmp-*`` folder left by a process killed
*during* ``write`` is never touched (it may belong to a save still running); delete it by hand.
(The ``rag-relax`` commands turn SIGTERM into an exception, so a ``timeout`` or ``kill`` unwinds
their saves and removes it; SIGKILL or a power cut cannot.) Files and folders get the modes
``open`` / ``mkdir`` would give them: a new one the mode the current umask allows, a rewrite the
mode the replaced one had (``tempfile`` alone gives 0600 / 0700).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag_relax_plugins._io_read import read_json, read_tensors

__all__ = [
    "SAVE_MARKER",
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_file_target",
    "check_save_target",
    "find_saved_folder",
    "read_json",
    "read_tensors",
    "saved_kind",
]

_OLD = ".old-"
SAVE_MARKER = ".rag_relax_save.json"
"""Marker file :func:`atomic_folder` writes into every folder it saves (JSON; loaders ignore it)."""
_MARKER_FORMAT = "rag-relax-plugins-save"
_MARKER_NOTE = "written by rag_relax_plugins; the next save to this folder replaces it whole"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; creates the parent folder. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; creates the parent folder. Returns the path.

    The file gets the mode an existing ``path`` has (else ``0o666`` less the umask), or ``mode``
    when given (set before the data is written: no moment with a wider one). Through a symbolic
    link the file it points to is replaced and the link kept (the link itself was replaced by a
    plain file, and the file it named went stale), as :func:`atomic_folder` saves through one."""
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temporary file beside the target as the OS reads the path (``link/..``: the link's parent;
    # mkstemp collapses ".." as text from Python 3.12, which would put it elsewhere)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=os.path.realpath(target.parent))
    tmp = Path(tmp_name)
    try:
        if mode is None:
            _usual_mode(tmp, 0o666, like=target)
        elif os.name == "posix":
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically. NaN and infinity are refused (they are not JSON).

    Raises:
        TypeError: ``obj`` holds something JSON cannot represent.
        ValueError: ``obj`` holds NaN or infinity.
    """
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def _usual_mode(path: Path, mode: int, *, like: Path) -> None:
    """Give a ``tempfile`` file (created 0600) or folder (0700) the mode ``open`` / ``mkdir`` would:
    the mode of ``like`` when it exists (a rewrite keeps a file's restricted mode, as ``open(p,
    "w")`` does), else ``mode`` less the current umask. Saves are for other users and services to
    read too, unless the umask or the file says otherwise."""
    if os.name != "posix":
        return
    try:
        os.chmod(path, stat.S_IMODE(like.stat().st_mode))
    except OSError:  # no such file yet
        os.chmod(path, mode & ~_umask())


def _usual_file_modes(folder: Path) -> None:
    """Give every file under ``folder`` the read bits the umask allows (``0o444`` less the umask),
    as ``open`` gives a new file: safetensors writes its files ``0o600``, so a model saved for a
    service, or a reader cache shared through ``$RAG_RELAX_CACHE``, was unreadable to other users
    beside ``0o644`` JSON files. Only read bits are added (execute and write bits stay as written);
    symbolic links and files with other hard links (shared with a path outside the save) are left
    alone."""
    if os.name != "posix":
        return
    readable = 0o444 & ~_umask()
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and mode | readable != mode:
                os.chmod(path, mode | readable)


def _umask() -> int:
    """The process umask, read at each call (a program may tighten it between saves)."""
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (names created or renamed in it) to disk; POSIX only."""
    if os.name != "posix":  # Windows cannot open a folder for fsync; NTFS journals renames
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # a few file systems refuse fsync on folders; the rename stays atomic
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every regular file under ``folder``, then every folder (deepest first), to disk."""
    flags = os.O_RDONLY if os.name == "posix" else os.O_RDWR  # Windows needs write access
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _backups(folder: Path) -> list[Path]:
    """The ``.<name>.old-XXXXXXXX`` siblings :func:`atomic_folder` made for ``folder``."""
    if not folder.parent.is_dir():
        return []
    # mkdtemp's random suffix is [a-z0-9_]; a dot after it (".a.old-x.y") is someone else's
    pattern = re.compile(rf"\.{re.escape(folder.name)}{re.escape(_OLD)}\w+")
    return [
        p
        for p in folder.parent.iterdir()
        if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
    ]


def _is_empty(folder: Path) -> bool:
    return next(folder.iterdir(), None) is None


def _covered(old: Path, new: Path) -> bool:
    """Every entry of ``old`` (recursively) is also written in ``new``, as the same kind."""
    for entry in old.iterdir():
        twin = new / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if not (twin.is_dir() and _covered(entry, twin)):
                return False
        elif not twin.is_file():
            return False
    return True


def _replaceable(target: Path, replace_if_contains: tuple[str, ...]) -> bool:
    """``target`` (an existing folder) is empty, or a save: a marker or legacy file is in it."""
    return _is_empty(target) or any(
        (target / name).is_file() for name in (SAVE_MARKER, *replace_if_contains)
    )


def saved_kind(folder: Path) -> str | None:
    """The ``kind`` the save marker in ``folder`` records (``None``: no marker, or no kind)."""
    try:
        marker = json.loads((folder / SAVE_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    kind = marker.get("kind") if isinstance(marker, dict) else None
    return kind if isinstance(kind, str) else None


def check_save_target(target: str | os.PathLike[str], *, kind: str, replace_if_contains: tuple[str, ...] = ()) -> None:
    """Refuse, before a run does any work, a ``target`` that :func:`atomic_folder` could refuse at
    the end: an existing file, a save of another ``kind``, or a non-empty folder with no save
    marker and no ``replace_if_contains`` file. A target this passes is one the final save
    accepts (unless it changes meanwhile), so a run never fails at its last step.

    Stricter than :func:`atomic_folder` in one case: a folder without a marker whose entries the
    save would all write again (a save of this package made before the marker existed) is
    refused here, since what the save writes is only known at the end; delete it or pick
    another folder.

    Raises:
        ValueError: as :func:`atomic_folder` would, with "nothing was changed" (the working
            directory or a folder above it too).
    """
    path = _save_path(target)
    _check_target(path, kind)
    if path.is_dir() and not _replaceable(path, tuple(replace_if_contains)):
        raise _refuse(path)


def _check_target(target: Path, kind: str | None) -> None:
    """What :func:`atomic_folder` and :func:`check_save_target` refuse before any write: an
    existing file, or a save whose marker names another ``kind`` (saves without one take no part)."""
    if target.exists() and not target.is_dir():
        raise ValueError(f"target must be a directory path, got an existing file: {target}")
    if target.is_dir() and os.path.ismount(target):  # the rename aside fails there ("Device or resource busy")
        raise ValueError(f"cannot replace {target}: it is a mount point, which a save cannot rename; "
                         "nothing was changed. Save into a folder inside it.")
    existing = saved_kind(target) if kind is not None and target.is_dir() else None
    if existing is not None and existing != kind:
        raise ValueError(f"refusing to replace {target}: it holds a saved {existing}, not a {kind}; "
                         "nothing was changed. Save into another folder.")


def _refuse(target: Path) -> ValueError:
    sample = sorted(p.name for p in target.iterdir())
    shown = ", ".join(sample[:5]) + (", ..." if len(sample) > 5 else "")
    return ValueError(
        f"refusing to replace the existing folder {target}: it is not empty ({shown}) and holds "
        f"no {SAVE_MARKER} (not a rag-relax-plugins save, or one made before saves were marked, "
        "2026-12-02); nothing was changed. Save into a new or empty folder, or delete this one first."
    )


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # no permission to look, a name too long: not a folder the save can use
        return False


def _need_folder(where: Path, target: object) -> None:
    """Refuse when the nearest entry of ``where`` or above it that exists, as the OS reads the
    path, is not a folder (a file, a dangling link, a symbolic link loop): the save could not
    create its folders there, or a loader given the same string could not follow them."""
    while not os.path.lexists(where) and where != where.parent:
        where = where.parent
    if not _is_dir(where):
        raise ValueError(f"cannot save into {target}: {where} is not a folder")


def check_file_target(path: str | os.PathLike[str]) -> None:
    """Refuse, before a run does its work, a file ``path`` whose folder the write could not reach:
    the nearest existing entry above it, as the OS reads the path (``notes.txt/..``, a dangling
    link), is not a folder (:func:`atomic_write_bytes` found it after the run), or ``path`` is
    itself a folder. ``ValueError``."""
    if Path(path).is_dir():  # the final rename onto it failed with IsADirectoryError
        raise ValueError(f"cannot write the file {path}: it is a folder")
    _need_folder(Path(path).absolute().parent, path)


def _os_path(typed: Path, target: object) -> Path:
    """The folder the absolute path ``typed`` names, as the OS reads it: the real path of its
    parent and its name, following a symbolic link at the last part (at most 40 of them, as the
    OS does). Every ``..`` must come after an existing folder, and the nearest existing entry
    above the name must be a folder, in ``typed`` and in each link's destination."""
    for _ in range(41):  # the path and 40 links, as Linux follows
        parts = typed.parts
        for i, part in enumerate(parts):
            if part == ".." and not _is_dir(Path(*parts[:i])):
                raise ValueError(f"cannot save into {target}: {Path(*parts[:i])} is not an existing folder, "
                                 "and the path goes up from it ('..')")
        if typed.name in ("", ".."):  # "/" has no name; ".." names the folder above its parent
            typed = Path(os.path.realpath(typed))
        _need_folder(typed.parent, target)
        path = Path(os.path.realpath(typed.parent)) / typed.name
        if not path.is_symlink():
            return path
        destination = Path(os.readlink(path))  # a link at the last part: the save goes through it
        typed = destination if destination.is_absolute() else path.parent / destination
    raise ValueError(f"cannot save into {target}: a symbolic link loop")


def _save_path(target: str | os.PathLike[str]) -> Path:
    """The folder a save to ``target`` replaces, as the OS reads ``target`` (:func:`_os_path`):
    ``link/..`` is the link's parent folder, not the folder beside the link (collapsing ``..`` as
    text wrote elsewhere than a load of the same string read), and through a symbolic link at the
    last part, the folder it points to (renaming the link itself would leave it behind). A loader
    given the same string finds the save.

    Raises:
        ValueError: it is the current working directory or a folder above it, which the save would
            rename away under the running process (``save(".")`` made its temporary folder inside
            the target and blamed it; ``save(os.getcwd())`` moved the working directory aside);
            ``..`` after a part that is not an existing folder (``a/../b`` without ``a``: the OS
            cannot read that path); a path that passes through the folder it replaces
            (``x/sub/..``, ``x/up/x`` with a link ``x/up -> ..``); a file, a dangling link or a
            symbolic link loop where a folder is needed (a dangling link only as the save folder
            itself is followed: the save creates the folder it points to).
        FileNotFoundError: a relative ``target`` while the working directory no longer exists.
    """
    try:
        cwd = Path.cwd().resolve()
    except OSError as exc:  # the working directory was deleted
        if not Path(target).is_absolute():
            raise FileNotFoundError(
                f"cannot save into {target}: a relative path, and the working directory no longer exists"
            ) from exc
        cwd = None
    typed = Path(target).absolute()
    try:
        path = _os_path(typed, target)
        resolved = path.resolve()
    except (RuntimeError, OSError) as exc:  # a loop further up (RuntimeError before Python 3.13)
        raise ValueError(f"cannot save into {target}: {exc}") from exc
    if cwd is not None and (resolved == cwd or resolved in cwd.parents):
        raise ValueError(
            f"cannot save into {target}: it is the current working directory or a folder above it, "
            "which a save would replace (rename) under the running process; save into a subfolder"
        )
    parts = typed.parts
    # only a path that goes up (by "..", or by a link on the way) can pass through the folder it names
    if ".." in parts or os.path.realpath(typed.parent) != str(typed.parent):
        for i in range(1, len(parts) - 1):
            through = Path(os.path.realpath(Path(*parts[: i + 1])))
            if through == resolved or resolved in through.parents:
                raise ValueError(f"cannot save into {target}: the path goes through the folder the save "
                                 f"replaces ({through})")
    return path


def atomic_folder(
    target: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    replace_if_contains: tuple[str, ...] = (),
    kind: str | None = None,
) -> Path:
    """Fill a temporary folder with ``write(tmp)``, then move it to ``target`` atomically.

    If ``write`` raises, the temporary folder is removed and an existing ``target`` is untouched.
    The new folder's files are flushed to disk (``fsync``) before any rename. An existing
    ``target`` is then renamed to a hidden ``.<name>.old-*`` sibling, the new folder renamed into
    place, the parent folder flushed and the old one deleted; see :func:`find_saved_folder` for
    the recovery of the instant between the two renames. Backups that an earlier crash left
    there are deleted once the new folder is in place.

    A ``target`` that is a symbolic link is saved through: the folder it points to is replaced
    and the link kept.

    Every folder written gets a small JSON marker file :data:`SAVE_MARKER` (loaders ignore it).
    An existing ``target`` is replaced only when it is a save, so that no folder of the user's
    is lost; that is, when it

    - is empty, or
    - holds :data:`SAVE_MARKER` (written by this function), or
    - holds a file named in ``replace_if_contains`` (how the caller recognises its own saves
      made before the marker existed), or
    - holds only entries that the new save writes too (same names and kinds, recursively): an
      older save of the same layout, whose every file is about to be replaced anyway.

    Anything else (``index.save("data/")`` on a folder with the user's files) raises
    ``ValueError`` and changes nothing. A save's folder belongs to the library: replacing it
    replaces all of it, files added to it by hand included. A save of one ``kind`` never replaces a save whose marker
    names another kind (``index.save`` onto a LangChain store's folder); saves without a kind,
    older ones included, do not take part in that check.

    Args:
        target: the folder to create or replace.
        write: fills the folder it is given (same file system as ``target``).
        replace_if_contains: file names that mark a folder as a save of the caller's, for saves
            made before :data:`SAVE_MARKER` existed (e.g. ``("items.safetensors",)``).
        kind: what is saved (e.g. ``"mol-index"``), recorded in the marker.

    Returns:
        The folder written, as an absolute :class:`~pathlib.Path`: the real path of ``target``'s
        parent and its name (through a symbolic link: the folder it points to).

    Raises:
        ValueError: ``target`` exists and is not a folder, or is a folder that is not a save
            (see above), or is the current working directory or a folder above it; the temporary
            folder is removed and ``target`` left as it was.
    """
    target = _save_path(target)
    names = tuple(replace_if_contains)
    if not all(isinstance(n, str) and n and "/" not in n for n in names):
        raise ValueError(f"replace_if_contains must hold plain file names, got {names!r}")
    _check_target(target, kind)  # refused before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _usual_mode(tmp, 0o777, like=target)
        write(tmp)
        _usual_file_modes(tmp)
        marker = {"format": _MARKER_FORMAT, "format_version": 1, "note": _MARKER_NOTE,
                  "save_id": uuid.uuid4().hex}  # _whole_save tells one save from the next
        if kind is not None:
            marker["kind"] = kind
        (tmp / SAVE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if (
            target.is_dir()
            and not _replaceable(target, names)
            and not _covered(target, tmp)
        ):
            raise _refuse(target)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # left by a crash between two renames, superseded by this save: only saves (marked), not a
    # user's folder that happens to be named ".<name>.old-keep", which a save deleted
    stale = [b for b in _backups(target) if (b / SAVE_MARKER).is_file()]
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD}", dir=target.parent))
        old.rmdir()  # only the unique name is wanted
        _replace_or_undo(target, old, tmp, restore=(old, target))
        _replace_or_undo(tmp, target, tmp, restore=(old, target))
        _fsync_dir(target.parent)
        stale.append(old)
    else:
        _replace_or_undo(tmp, target, tmp, restore=None)
        _fsync_dir(target.parent)
    for backup in stale:
        shutil.rmtree(backup, ignore_errors=True)
    return target


def _replace_or_undo(src: Path, dst: Path, tmp: Path, *, restore: tuple[Path, Path] | None) -> None:
    """``os.replace(src, dst)`` for :func:`atomic_folder`; when it fails (a full disk, an
    interrupt before or just after the rename, another save that took the name meanwhile) the
    new save in ``tmp`` is removed and ``restore = (aside, target)``, the previous save moved
    aside, put back where the target is free: a failure left a ``.tmp-*`` copy and the target
    missing until the next save."""
    try:
        os.replace(src, dst)
    except BaseException:
        if restore is not None and os.path.lexists(restore[0]) and not os.path.lexists(restore[1]):
            with contextlib.suppress(OSError):
                os.replace(*restore)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def find_saved_folder(
    folder: str | os.PathLike[str], marker: str = "config.json", *, what: str = "saved folder",
    kind: str | None = None,
) -> Path:
    """The folder a reader should load: ``folder`` itself, or the backup a crash left behind.

    Args:
        folder: the folder that was saved with :func:`atomic_folder`.
        marker: a file every complete save contains.
        what: what the folder holds, for the error message (``"checkpoint"``, ``"saved model"``).
        kind: the ``kind`` the reader loads (as :func:`atomic_folder` records it): a save whose
            marker names another kind is refused, naming it (saves without one take no part).

    Returns:
        ``folder`` if it holds ``marker``; else, when ``folder`` is missing, the newest complete
        ``.<name>.old-*`` sibling (a crash between the two renames of a replacement).

    Raises:
        FileNotFoundError: no complete save is found: ``"<what> not found: <folder> (expected
            <marker> inside)"``.
        ValueError: ``folder`` holds a save of another ``kind``: ``"<folder> holds a saved
            <other>, not a <kind>"``, and for a checkpoint the folder inside it that holds a
            ``kind``.
    """
    folder = Path(folder)
    other = saved_kind(folder) if kind is not None and folder.is_dir() else None
    if other is not None and other != kind:
        inner = [p.name for p in sorted(folder.iterdir()) if p.is_dir() and saved_kind(p) == kind]
        hint = f"; load {folder / inner[0]}" if inner else ""
        raise ValueError(f"{folder} holds a saved {other}, not a {kind}{hint}")
    if (folder / marker).is_file():
        return folder
    if not folder.exists():  # a dangling link: its target's backups (atomic_folder saves through links)
        try:
            base = folder.resolve() if folder.is_symlink() else folder
        except (RuntimeError, OSError) as exc:  # a symbolic link loop
            raise FileNotFoundError(f"{what} not found: {folder} is a symbolic link that leads nowhere ({exc})") from exc
        backups = [p for p in _backups(base) if (p / marker).is_file()]
        if backups:
            return max(backups, key=lambda p: p.stat().st_mtime)
    raise FileNotFoundError(f"{what} not found: {folder} (expected {marker} inside)")

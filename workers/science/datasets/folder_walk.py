"""Walking a lab's image folder safely: regular files only, each folder once, images checked.

``os.walk(followlinks=True)`` (torchvision's ``make_dataset``) loops forever on a symbolic link
to a folder above it, blows up exponentially on two links to the same folder, and lists a FIFO
named ``z.png`` as an image, which then blocks the run in ``open()`` until a writer comes. Here:

- the walk is ``os.scandir`` with an explicit stack (no recursion);
- only regular files are listed (``stat.S_ISREG``, a symbolic link to one included); a FIFO,
  socket or device anywhere in the tree, or a broken symbolic link, refuses the dataset in one
  line naming it;
- symbolic links to folders are followed, but every folder is read once: the ``(st_dev,
  st_ino)`` of each folder entered is kept, and a link that leads to one already entered (a
  loop back to a folder above it, or a second link to the same folder) refuses the dataset in
  one line naming the link;
- ``open_image`` opens a file non-blocking, checks it is still a regular file, and decodes it
  whole, so a truncated or corrupt image, or one past PIL's decompression-bomb limit
  (``PIL.Image.MAX_IMAGE_PIXELS``, kept as PIL sets it), is one line naming the file.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from workers.science.datasets.limits import RefusedData

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def kind_of(mode: int) -> str:
    """'a FIFO (named pipe)', 'a socket', ... for a file mode that is not a regular file."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _entry_stat(entry: os.DirEntry[str]) -> os.stat_result:
    """The entry's own mode, or its target's for a symbolic link; one line when it has none."""
    try:
        return entry.stat(follow_symlinks=True)
    except OSError as exc:
        what = "a broken symbolic link" if entry.is_symlink() else "unreadable"
        raise RefusedData(f"{entry.path} is {what} ({exc.strerror}): an image folder holds "
                          "regular files and folders only") from None


def subfolders(folder: Path) -> list[str]:
    """Names of the folders (or links to folders) directly in ``folder``, sorted.

    A FIFO, socket, device or broken link there refuses the folder; regular files are ignored,
    as ImageFolder ignores them.
    """
    names = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                info = _entry_stat(entry)
                if stat.S_ISDIR(info.st_mode):
                    names.append(entry.name)
                elif not stat.S_ISREG(info.st_mode):
                    raise RefusedData(f"{entry.path} is {kind_of(info.st_mode)}: an image folder "
                                      "holds regular files and folders only")
    except OSError as exc:
        raise RefusedData(f"{folder} cannot be listed ({exc.strerror})") from None
    return sorted(names)


Entered = dict[tuple[int, int], str]
"""(st_dev, st_ino) of every folder entered -> the path it was entered by."""


def _walk(folder: Path, extensions: tuple[str, ...], entered: Entered) -> Iterator[tuple[str, str]]:
    """(folder, name) of each regular file under ``folder`` with one of ``extensions``, in no
    particular order, each folder entered once (``entered`` is shared by a split's classes)."""
    lowered = tuple(suffix.lower() for suffix in extensions)
    start = os.stat(folder)
    if (start.st_dev, start.st_ino) in entered:
        raise RefusedData(f"{folder} is a second way into {entered[(start.st_dev, start.st_ino)]}; "
                          "every folder of an image folder is read once")
    entered[(start.st_dev, start.st_ino)] = str(folder)
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                listed = list(entries)
        except OSError as exc:
            raise RefusedData(f"{current} cannot be listed ({exc.strerror})") from None
        for entry in listed:
            if not entry.is_symlink() and entry.is_file(follow_symlinks=False):
                if entry.name.lower().endswith(lowered):
                    yield current, entry.name
                continue
            info = _entry_stat(entry)
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in entered:
                    first = entered[identity]
                    how = ("a symbolic link loop: it leads back to "
                           if _above(first, entry.path) else "a second way into ")
                    raise RefusedData(f"{entry.path} is {how}{first}; every folder of an image "
                                      "folder is read once")
                entered[identity] = entry.path
                stack.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                if entry.name.lower().endswith(lowered):
                    yield current, entry.name
            else:
                raise RefusedData(f"{entry.path} is {kind_of(info.st_mode)}: an image folder "
                                  "holds regular files and folders only")


def regular_files(folder: Path, extensions: tuple[str, ...],
                  entered: Entered | None = None) -> list[Path]:
    """Every regular file under ``folder`` whose name ends with one of ``extensions``.

    In ``os.walk``'s sorted order (by folder path, then name), as torchvision's ``make_dataset``
    lists them, through links to folders, each folder once (see the module docstring). Pass
    one ``entered`` to the calls for the classes of one split: a folder is then read once in
    the split, not once per class.
    """
    found = sorted(_walk(folder, extensions, {} if entered is None else entered))
    return [Path(parent, name) for parent, name in found]


def has_file(folder: Path, extensions: tuple[str, ...]) -> bool:
    """Whether ``folder`` holds at least one such file (the walk stops at the first)."""
    return next(_walk(folder, extensions, {}), None) is not None


def _above(folder: str, path: str) -> bool:
    """Whether ``folder`` is ``path`` or one of the folders it lies in (as written)."""
    return os.path.commonpath([folder, path]) == folder


def open_image(path: str | Path) -> Image.Image:
    """The decoded image at ``path``; one line naming the file when it cannot be.

    The file is opened non-blocking and must still be a regular file. The whole image is
    decoded here (``Image.load``), so that a truncated file fails now, naming it, and not in
    a transform; an image larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (PIL's warning limit
    against decompression bombs, about 89 million pixels) is refused, not decoded.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise RefusedData(f"{path} cannot be opened ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RefusedData(f"{path} is {kind_of(mode)}, not an image: refused without reading it")
    with os.fdopen(fd, "rb") as handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(handle)
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise RefusedData(f"{path} is refused as a decompression bomb: {_first_line(exc)} "
                              "(PIL.Image.MAX_IMAGE_PIXELS)") from None
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
            raise RefusedData(f"{path} is not a readable image ({type(exc).__name__}: "
                              f"{_first_line(exc)}): truncated or corrupt") from None
    return image


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

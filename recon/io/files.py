"""Which paths recon may read and write: the one home of its input and output path rules.

- Inputs must be regular files (``check_input_file``): a FIFO, socket, device or folder is refused
  before it is opened (opening a FIFO blocks until a writer appears; a device may never end).
- Outputs never replace an input (``check_outputs``): every file a command will write is compared
  with every input by resolved path and by device/inode (``os.path.samefile``), so symbolic and hard
  links to an input are caught too; an output folder (a DICOM series) may not contain an input.
- An existing output is replaced only when the caller says so (``overwrite=True``; ``recon mri
  --overwrite``).

Writing itself is atomic: see ``recon.io.atomic``.
"""

from __future__ import annotations

import os
import stat


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): the one-line
    error messages of every reader."""
    s = str(exc).strip()
    return s.splitlines()[0] if s else type(exc).__name__


def check_input_file(path, what: str = "input") -> str:
    """``path`` as a str after checking it names an existing regular file (symlinks followed).

    Raises FileNotFoundError when it does not exist, ValueError (one line) for a folder, FIFO,
    socket or device. Does not open the file.
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {p}") from None
    except OSError as exc:
        raise ValueError(f"{p}: cannot access the {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{p}: is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "not a regular file")
        raise ValueError(f"{p}: is {kind}; recon reads only regular files")
    return p


def _same(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same file (resolved path, or the same device and inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _inside(path: str, folder: str) -> bool:
    f = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), f]) == f


def check_outputs(files=(), folders=(), *, inputs=(), overwrite: bool = False,
                  hint: str = "pass overwrite=True to replace it") -> None:
    """Refuse outputs that would write over an input, or over an existing file unless ``overwrite``.

    ``files``: the output files a command will write; ``folders``: output folders it will fill (a
    DICOM series), which may not hold an input; ``inputs``: the files it reads. Raises ValueError
    naming the output and the input it would replace, or FileExistsError naming the existing
    output and ``hint`` (e.g. "pass --overwrite to replace it").
    """
    inputs = [os.fspath(p) for p in inputs]
    files = [os.fspath(p) for p in files]
    folders = [os.fspath(p) for p in folders]
    for out in files + folders:
        for inp in inputs:
            if _same(out, inp) or (out in folders and _inside(inp, out)):
                what = "is" if _same(out, inp) else "holds"
                raise ValueError(f"{out}: {what} the input {inp}; recon never writes over its input "
                                 "(choose another output)")
    if not overwrite:
        for out in files + folders:
            if os.path.lexists(out):
                raise FileExistsError(f"{out} exists; {hint}")

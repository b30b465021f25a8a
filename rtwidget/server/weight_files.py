"""Model weights that come from Python packages, read once and checked against the SHA-256
recorded when they were vetted. The engines load the bytes that were checked (not the file
again), so a file swapped after the check is never run. A package that is missing, or a file
that does not match, raises :class:`~rtwidget.EngineUnavailable` saying so, and the engine's
caller falls back to another."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path

from ..protocol.errors import EngineUnavailable


def package_dir(module: str, requirement: str, extra: str) -> Path:
    """The folder of the installed package ``module`` (``requirement`` and ``extra`` name
    what to install when it is not there)."""
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailable(
            f"{module} is not available ({exc}); install it with pip install "
            f"'{requirement}' or pip install 'rtwidget[{extra}]'",
            needs=requirement, install=f"pip install '{requirement}'") from None
    return Path(str(found.__file__)).parent


def checked_files(folder: Path, expected: Mapping[str, str], package: str) -> dict[str, bytes]:
    """The files named in ``expected`` (name → SHA-256 in hex) read from ``folder``, each
    checked; a missing file or another digest raises :class:`EngineUnavailable`."""
    out: dict[str, bytes] = {}
    for name, digest in expected.items():
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EngineUnavailable(f"{package}: weight file {name} cannot be read ({exc})",
                                    needs=package, install=f"pip install '{package}'") from None
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise EngineUnavailable(
                f"{package}: {name} is not the file that was vetted (SHA-256 {got[:16]}…, "
                f"expected {digest[:16]}…); reinstall it with pip install --force-reinstall "
                f"'{package}'", needs=package)
        out[name] = data
    return out

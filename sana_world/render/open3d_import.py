"""Import open3d even on machines without the system libusb it links against.

open3d 0.20 wheels link ``libusb-1.0.so.0`` (for the RealSense reader) and fail at import time without it.
:func:`import_open3d` tries, in order:

1. a plain ``import open3d``;
2. loading the ``libusb-1.0`` shared library shipped by the pip package ``libusb-package`` into the global
   symbol namespace (ctypes, RTLD_GLOBAL), then importing again;
3. otherwise it raises one :class:`ImportError` that says how to fix the machine.
"""

from __future__ import annotations

import ctypes
import importlib
import sys
from types import ModuleType

FIX_HINT = (
    "open3d could not be imported: {cause}. open3d 0.20 needs the system library libusb-1.0. Fix it with "
    "`apt-get install -y libusb-1.0-0` (as root, after `apt-get update`), or `pip install libusb-package` "
    "(import_open3d then loads its bundled libusb-1.0.so before importing open3d)."
)

_MODULE: ModuleType | None = None


def _forget_partial_import() -> None:
    """Drop half-imported open3d modules so that the next import starts from scratch."""
    for name in [n for n in sys.modules if n == "open3d" or n.startswith("open3d.")]:
        del sys.modules[name]


def _load_bundled_libusb() -> str | None:
    """Load libusb from the ``libusb-package`` wheel with RTLD_GLOBAL; returns its path or None if absent."""
    try:
        import libusb_package  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = libusb_package.get_library_path()
    if path is None:
        return None
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return str(path)


def import_open3d() -> ModuleType:
    """Return the ``open3d`` module, loading a bundled libusb first if the plain import fails.

    Raises:
        ImportError: open3d is not installed, or libusb-1.0 is missing and ``libusb-package`` is not
            installed (the message names both fixes).
    """
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    # 1. plain import
    try:
        _MODULE = importlib.import_module("open3d")
        return _MODULE
    except ImportError as first:
        cause = f"{type(first).__name__}: {first}"
        if isinstance(first, ModuleNotFoundError) and first.name == "open3d":
            raise ImportError(f"open3d is not installed ({cause}); `pip install open3d`") from first
        _forget_partial_import()
        # 2. bundled libusb, then import again
        lib = _load_bundled_libusb()
        if lib is None:
            raise ImportError(FIX_HINT.format(cause=cause)) from first
        try:
            _MODULE = importlib.import_module("open3d")
        except ImportError as second:
            _forget_partial_import()
            raise ImportError(FIX_HINT.format(cause=f"{cause}; after loading {lib}: {second}")) from second
        return _MODULE

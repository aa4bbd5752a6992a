"""Memory that long recordings give back: large freed buffers returned to the OS (Linux, glibc).

Scoring 200,000 held-out windows in chunks allocates and frees the same few 10-MB buffers again and again;
glibc's allocator raises its mmap threshold after such frees and then keeps them on its heap, so a fit of
2 M rows held ~0.5 GB it no longer used. A fixed 1 MiB threshold keeps every large buffer in its own mapping,
returned when freed. Elsewhere (macOS, musl, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
THRESHOLD_BYTES = 1 << 20
_done = False


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold at :data:`THRESHOLD_BYTES` once per process; True when it took effect."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        _done = False
    return _done

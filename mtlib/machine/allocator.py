"""glibc malloc settings for training on a CPU, applied by the trainer (not left to the user).

glibc hands every allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start, adapting upward) its own ``mmap``
and returns freed heap top above ``M_TRIM_THRESHOLD`` to the kernel. A training step allocates and frees the
same activation-sized buffers (a few MB each) hundreds of times, so every step pays fresh page faults on them
(70-150k per three batches on the AVX2 EPYC, 11-17% system time). Raising them (mmap to 32 MB, glibc's ceiling; trim to 256 MB) keeps
those buffers in the heap and reuses their pages: ``benchmarks/malloc_check.py`` measures page faults and
CPU time of the same steps with and without, in one invocation (docs/speed.md). Memory is not lost: the
freed buffers are reused by the next step; only the heap's high-water mark stays mapped.

``mallopt`` changes the settings of the running process (environment variables would need a restart), so the
trainer calls ``tune_malloc()`` at the start of every run; it is a no-op off glibc and once applied.
``MTLIB_MALLOC=default`` leaves glibc's own settings (for the measurement).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling on 64-bit; above any activation buffer of MiniLM or bert-base here
TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def tune_malloc() -> str:
    """Apply the settings once; returns what was done (for the record)."""
    if os.environ.get("MTLIB_MALLOC", "") == "default":
        return "glibc defaults (MTLIB_MALLOC=default)"
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        version = libc.gnu_get_libc_version if libc is not None else None
    except (OSError, AttributeError):
        version = None
    if version is None:
        return "not glibc: allocator left as it is"
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        return "glibc refused mallopt: defaults kept"
    return f"glibc mmap threshold {MMAP_THRESHOLD // 2**20} MB, trim threshold {TRIM_THRESHOLD // 2**20} MB"

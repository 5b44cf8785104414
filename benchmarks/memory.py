"""Peak resident memory of a call on Linux (resets the high-water mark through /proc/self/clear_refs)."""
from __future__ import annotations

import gc


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_delta_mb(fn) -> tuple[object, float]:
    """Run fn(); return (its result, peak RSS during the call minus RSS before, in MB)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    result = fn()
    return result, (_status_kb("VmHWM") - before) / 1024.0

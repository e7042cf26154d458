"""Output formatting several commands share."""

from __future__ import annotations


def human_size(n: int) -> str:
    """1023 B, 2.2 KiB, 15.0 MiB, 4.0 GiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def printable(text: object, limit: int = 120) -> str:
    """Text from a file (a snapshot's reason, say) safe to print on one line:
    control characters escaped, at most `limit` characters."""
    s = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    return out if len(out) <= limit else out[: limit - 3] + "..."

"""Parsing of index lists such as ``0-99`` or ``0,3,5-9`` (scenes, frames, objects)."""
from __future__ import annotations

from graspnet_edge_ros.errors import ConfigError


def parse_index_list(text: str, what: str) -> list[int]:
    """``"0-2,7"`` -> [0, 1, 2, 7] (ranges inclusive, order kept, duplicates dropped).

    Raises:
        ConfigError naming ``what`` for anything that is not a non-negative index or range.
    """
    indices: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if low > high:
                    raise ValueError
                values = range(low, high + 1)
            else:
                values = [int(part)]
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not an index or an ascending range like 0-99") from None
        for value in values:
            if value < 0:
                raise ConfigError(f"{what}: negative index {value}")
            if value not in indices:
                indices.append(value)
    if not indices:
        raise ConfigError(f"{what}: empty index list {text!r}")
    return indices

"""What a list of MagCache magnitude ratios must be, whether a preset gives it or a stored file."""

import math
from typing import Any


def valid_ratios(ratios: Any) -> bool:
    """Whether `ratios` is a non-empty list of finite positive numbers."""
    return (
        isinstance(ratios, (list, tuple))
        and len(ratios) > 0
        and all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios)
        and all(_finite_positive(r) for r in ratios)
    )


def _finite_positive(number: int | float) -> bool:
    try:
        value = float(number)
    except OverflowError:  # an integer past float's range (JSON allows hundreds of digits)
        return False
    return math.isfinite(value) and value > 0

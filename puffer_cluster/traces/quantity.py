"""Kubernetes resource quantities ("500m", "1.5", "256Mi", "1G", "2e3") as numbers.

The grammar is the one in k8s.io/apimachinery/pkg/api/resource/quantity.go:

    quantity  ::= sign? number suffix?
    number    ::= digits | digits "." digits? | "." digits
    suffix    ::= Ki | Mi | Gi | Ti | Pi | Ei          (powers of 1024)
                | m | k | M | G | T | P | E            (powers of 1000)
                | ("e" | "E") sign? digits            (power of ten)

Parsing goes through `Decimal` so that "0.1Gi" or "1.1e-3" do not pick up binary
rounding before they are scaled.
"""

import math
import re
from decimal import ROUND_CEILING, Decimal, DecimalException

__all__ = ["QuantityError", "cpu_millicores", "memory_bytes", "parse_cpu_cores", "parse_memory_bytes",
           "parse_quantity"]


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity, or not a usable resource amount."""


_SUFFIX_SCALE: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
}

# [0-9] rather than \d: Python's \d also matches non-ASCII digits, which Kubernetes refuses.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>[KMGTPE]i|[mkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?"
)


def parse_quantity(value: str | int | float) -> float:
    """The numeric value of a quantity: cores for CPU, bytes for memory.

    Plain numbers are accepted too, because Kubernetes accepts unquoted JSON numbers
    (and YAML turns `cpu: 2` into an int).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QuantityError(f"expected a quantity string or number, got {type(value).__name__}")
    if isinstance(value, str):
        return float(_parse_exact(value))
    try:
        number = float(value)
    except OverflowError as exc:  # an int beyond float range
        raise QuantityError("quantity is out of range") from exc
    if not math.isfinite(number):
        raise QuantityError(f"quantity {number!r} is not a finite number")
    return number


def parse_cpu_cores(value: str | int | float) -> float:
    """CPU cores, rounded up to whole millicores as the scheduler does ("0.0001" -> 0.001)."""
    return float(_exact_millicores(value) / 1000)


def parse_memory_bytes(value: str | int | float) -> float:
    """Memory in bytes, rounded up to a whole byte as the scheduler does ("500m" -> 1.0)."""
    return float(_parse_resource_amount(value, "memory").to_integral_value(rounding=ROUND_CEILING))


def cpu_millicores(value: str | int | float) -> int:
    """Whole millicores, the scheduler's CPU unit (rounded up, as `parse_cpu_cores`)."""
    return int(_exact_millicores(value))


def _exact_millicores(value: str | int | float) -> Decimal:
    return (_parse_resource_amount(value, "CPU") * 1000).to_integral_value(rounding=ROUND_CEILING)


def memory_bytes(value: str | int | float) -> int:
    """Whole bytes, the scheduler's memory unit."""
    return int(parse_memory_bytes(value))


def _parse_resource_amount(value: str | int | float, resource: str) -> Decimal:
    """A non-negative quantity, kept exact so that rounding up is done on the true value."""
    if isinstance(value, str):
        amount = _parse_exact(value)
    else:
        # str() first: Decimal(0.1) would carry float noise into the rounding up.
        amount = Decimal(str(parse_quantity(value)))
    if amount < 0:
        raise QuantityError(f"{resource} quantity {value!r} is negative")
    return amount


def _parse_exact(text: str) -> Decimal:
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise QuantityError(
            f"{_shorten(text)} is not a Kubernetes quantity "
            "(expected e.g. '500m', '1.5', '256Mi', '1G' or '2e3')"
        )
    number = Decimal(match["number"])
    try:
        if match["exponent"] is not None:
            amount = number.scaleb(int(match["exponent"]))
        else:
            amount = number * _SUFFIX_SCALE[match["suffix"] or ""]
    except (DecimalException, ValueError) as exc:  # exponent too large for Decimal or for int()
        raise QuantityError(f"quantity {_shorten(text)} is out of range") from exc
    if not math.isfinite(float(amount)):
        raise QuantityError(f"quantity {_shorten(text)} is out of range")
    return amount


def _shorten(text: str, limit: int = 40) -> str:
    """repr() of the text, cut so that a pathological value cannot flood an error message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."

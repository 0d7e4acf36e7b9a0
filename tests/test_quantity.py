"""Kubernetes quantity parsing: the values Kubernetes accepts, and refusal of everything else."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puffer_cluster.traces.quantity import QuantityError, parse_cpu_cores, parse_memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", 0.5),
        ("1.5", 1.5),
        ("2", 2.0),
        ("0", 0.0),
        ("256Mi", 256 * 1024**2),
        ("1Ki", 1024.0),
        ("1Gi", 1024.0**3),
        ("1Ti", 1024.0**4),
        ("1Pi", 1024.0**5),
        ("1Ei", 1024.0**6),
        ("100k", 100_000.0),
        ("1M", 1e6),
        ("1G", 1e9),
        ("1T", 1e12),
        ("1P", 1e15),
        ("1E", 1e18),  # exa, not an exponent
        ("2e3", 2000.0),
        ("2E3", 2000.0),
        ("1e-3", 0.001),
        ("1.5e+2", 150.0),
        ("0.1Gi", 107374182.4),
        (".5", 0.5),
        ("1.", 1.0),
        ("+1", 1.0),
        ("-1", -1.0),
        ("-500m", -0.5),
        ("17000m", 17.0),
        ("34.72942428328025Gi", 34.72942428328025 * 1024**3),
        (2, 2.0),
        (0.25, 0.25),
    ],
)
def test_parse_quantity_accepts_kubernetes_forms(text, expected):
    assert parse_quantity(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is not a Kubernetes quantity"),
        ("abc", "is not a Kubernetes quantity"),
        (" 1", "is not a Kubernetes quantity"),
        ("1 ", "is not a Kubernetes quantity"),
        ("1\n", "is not a Kubernetes quantity"),
        ("1ki", "is not a Kubernetes quantity"),
        ("1KB", "is not a Kubernetes quantity"),
        ("1Mb", "is not a Kubernetes quantity"),
        ("Ki", "is not a Kubernetes quantity"),
        ("1e", "is not a Kubernetes quantity"),
        ("1e1.5", "is not a Kubernetes quantity"),
        ("1.2.3", "is not a Kubernetes quantity"),
        ("--1", "is not a Kubernetes quantity"),
        (".", "is not a Kubernetes quantity"),
        ("1_000", "is not a Kubernetes quantity"),
        ("0x10", "is not a Kubernetes quantity"),
        ("nan", "is not a Kubernetes quantity"),
        ("inf", "is not a Kubernetes quantity"),
        ("\u0661", "is not a Kubernetes quantity"),  # Arabic-Indic one: a digit to Python, not to Kubernetes
        ("1e400", "out of range"),
        ("1e99999999999999", "out of range"),
        ("1e" + "9" * 5000, "out of range"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (10**400, "out of range"),
        (True, "expected a quantity string or number, got bool"),
        (None, "expected a quantity string or number, got NoneType"),
        ([1], "expected a quantity string or number, got list"),
    ],
)
def test_parse_quantity_refuses_garbage(value, message):
    with pytest.raises(QuantityError, match=message):
        parse_quantity(value)


def test_quantity_error_is_a_value_error_and_keeps_messages_short():
    with pytest.raises(ValueError) as caught:
        parse_quantity("x" * 10_000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("value", "cores"),
    [
        ("500m", 0.5),
        ("1.5", 1.5),
        ("2", 2.0),
        ("0.0001", 0.001),
        ("100m", 0.1),
        ("1e-3", 0.001),
        (0.1, 0.1),
        (3, 3.0),
    ],
)
def test_parse_cpu_cores_rounds_up_to_millicores(value, cores):
    assert parse_cpu_cores(value) == cores


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("256Mi", 268435456.0),
        ("1G", 1e9),
        ("500m", 1.0),
        ("0.1Gi", 107374183.0),
        ("1Ki", 1024.0),
        (512, 512.0),
    ],
)
def test_parse_memory_bytes_rounds_up_to_whole_bytes(value, size):
    assert parse_memory_bytes(value) == size


@pytest.mark.parametrize("parse", [parse_cpu_cores, parse_memory_bytes])
@pytest.mark.parametrize("value", ["-1", "-500m", -2])
def test_resource_amounts_cannot_be_negative(parse, value):
    with pytest.raises(QuantityError, match="is negative"):
        parse(value)


@pytest.mark.parametrize("parse", [parse_cpu_cores, parse_memory_bytes])
def test_resource_parsers_refuse_garbage_too(parse):
    with pytest.raises(QuantityError, match="is not a Kubernetes quantity"):
        parse("lots")


_SCALES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


@settings(max_examples=200, deadline=1000)
@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(_SCALES)))
def test_whole_numbers_scale_exactly(number, suffix):
    assert parse_quantity(f"{number}{suffix}") == float(number * _SCALES[suffix])


@settings(max_examples=300, deadline=1000)
@given(st.text(max_size=12))
def test_arbitrary_text_parses_or_raises_quantity_error(text):
    try:
        value = parse_quantity(text)
    except QuantityError:
        return
    assert isinstance(value, float)

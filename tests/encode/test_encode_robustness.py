"""Malformed files: truncation, flipped bytes, wrong magic or version, absurd sizes → FormatError.

Nothing else may escape the reader — no other exception, no hang, no huge allocation.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepshrink.encode import unpack
from deepshrink.encode.container import FORMAT_VERSION, PRELUDE
from deepshrink.errors import FormatError

fuzz = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _reject(data: bytes, match: str | None = None, *, measure: bool = True) -> FormatError:
    if not measure:
        with pytest.raises(FormatError, match=match) as caught:
            unpack(data, "model.dsz")
        return caught.value
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=match) as caught:
            unpack(data, "model.dsz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"the reader allocated {peak} bytes before refusing the file"
    return caught.value


def test_the_sample_decodes(container, dsz) -> None:
    tensors = unpack(container).tensors
    assert {k: v.shape for k, v in tensors.items()} == {
        k: v.shape for k, v in dsz.sample_tensors().items()
    }
    layouts = {t["layout"] for t in dsz.split(container)[0]["tensors"]}
    assert layouts == {"raw", "dense", "sparse", "support"}


def test_truncation_at_every_section_boundary_and_every_byte(container, dsz) -> None:
    _, spans = dsz.split(container)
    boundaries = {0, 8, PRELUDE.size, spans[0][0]}
    boundaries |= {start + 12 for start, _ in spans} | {end for _, end in spans[:-1]}
    for cut in sorted(boundaries):
        error = _reject(container[:cut])
        assert "model.dsz" in str(error)
    for cut in range(0, len(container), 7):
        _reject(container[:cut])
    _reject(container + b"\x00", "after the last section")


def test_every_single_flipped_byte_is_caught(container) -> None:
    for position in range(len(container)):
        damaged = bytearray(container)
        damaged[position] ^= 0x5A
        _reject(bytes(damaged), measure=False)


def test_wrong_magic_version_and_reserved_field(container) -> None:
    assert "wrong magic" in str(_reject(b"PK\x03\x04" + container[4:]))
    fields = list(PRELUDE.unpack_from(container))
    newer = (1, FORMAT_VERSION + 1, f"version {FORMAT_VERSION + 1}")
    for index, value, message in [newer, (2, 1, "reserved")]:
        changed = list(fields)
        changed[index] = value
        assert message in str(_reject(PRELUDE.pack(*changed) + container[PRELUDE.size :]))
    changed = list(fields)
    changed[4] = 2**31  # a header that claims 2 GiB of JSON
    _reject(PRELUDE.pack(*changed) + container[PRELUDE.size :], "claims")


def _first(header: dict[str, Any], layout: str) -> dict[str, Any]:
    return next(t for t in header["tensors"] if t["layout"] == layout)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda h: _first(h, "raw").update(shape=[2**40]), "section 'raw'|cap"),
        (lambda h: _first(h, "sparse").update(shape=[2**40]), "cannot describe|cap"),
        (
            lambda h: _first(h, "sparse").update(entries=2**40, shape=[2**40]),
            "symbols cannot fit|holds|cap",
        ),
        (lambda h: _first(h, "dense").update(shape=[2**20, 2**20]), "cannot fit|holds|cap"),
        (lambda h: _first(h, "sparse").update(index_bits=17), "index_bits"),
        (lambda h: _first(h, "dense").update(codebook=300), "codebook"),
        (lambda h: _first(h, "dense").update(codebook=0), "section 'values'"),
        (lambda h: _first(h, "support").update(of="nothing"), "follows"),
        (lambda h: _first(h, "support").update(dtype="float32"), "follows|bool"),
        (lambda h: _first(h, "raw").update(dtype="complex64"), "unknown dtype"),
        (lambda h: _first(h, "raw").update(shape=[-1]), "shape"),
        (lambda h: _first(h, "raw").update(shape=["3"]), "shape"),
        (lambda h: _first(h, "raw").update(extra=1), "extra"),
        (lambda h: h["tensors"].append(dict(h["tensors"][0])), "repeat"),
        (lambda h: h.update(format="zip"), "format"),
        (lambda h: h.pop("tensors"), "tensors"),
        (lambda h: h.update(tensors=h["tensors"][:-1]), "after the last section"),
    ],
)
def test_inconsistent_headers_with_valid_crc(container, dsz, edit, problem) -> None:
    _reject(dsz.with_header(container, edit), problem)


def test_crafted_section_payloads_with_valid_crc(container, dsz) -> None:
    _, spans = dsz.split(container)
    rejected = 0
    for index in range(len(spans)):
        for payload in (b"", b"\xff" * 3, b"\x00" * 64, bytes(range(256))):
            try:
                unpack(dsz.with_section(container, index, payload))
            except FormatError:
                rejected += 1
    assert rejected >= 3 * len(spans)  # a few payloads happen to be consistent


@fuzz
@given(st.data())
def test_fuzz_random_damage(container, data) -> None:
    damaged = bytearray(container)
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    if bytes(damaged[:cut]) == container:
        return
    _reject(bytes(damaged[:cut]))


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(-3, 2**40), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
fields = st.sampled_from(
    [
        "name",
        "dtype",
        "shape",
        "layout",
        "entries",
        "index_bits",
        "codebook",
        "gaps",
        "values",
        "of",
    ]
)


@fuzz
@given(st.data())
def test_fuzz_header_fields_and_payloads_with_valid_crc(container, dsz, data) -> None:
    header, spans = dsz.split(container)
    index = data.draw(st.integers(0, len(header["tensors"]) - 1))
    field, value = data.draw(fields), data.draw(junk)
    edited = dsz.with_header(container, lambda h: h["tensors"][index].update({field: value}))
    section = data.draw(st.integers(0, len(spans) - 1))
    payload = data.draw(st.binary(max_size=40))
    for candidate in (edited, dsz.with_section(container, section, payload)):
        with contextlib.suppress(FormatError):  # decoding a consistent edit is fine too
            unpack(candidate)

"""Which record-batch codecs this install can read, and how it checks CRCs.

kafka-python decodes lz4, zstd and snappy batches only when their libraries import, and checks
record-batch CRC-32C in pure Python (~50x slower) unless the `crc32c` C extension does. A
missing library does not fail at start: it fails at the first batch that needs it. So
`warden run` and `warden config check` ask here, by a real round trip through kafka-python's
own codec functions, and say what this install can and cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import structlog

log = structlog.get_logger("warden.kafka")

# codec → the distribution that provides it (gzip is the standard library's zlib)
CODEC_PACKAGES = {"gzip": None, "snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}
SAMPLE = b'{"prediction_id":"codec-check","features":{"x":1.0}}' * 8


@dataclass(frozen=True)
class CodecSupport:
    """One codec: whether a batch compressed with it can be read here, and by what."""

    name: str
    readable: bool
    detail: str  # the library and version, or why it is missing


def _version(package: str | None) -> str:
    if package is None:
        import zlib

        return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def _round_trip(name: str) -> None:
    """Compress and decompress with kafka-python's functions: what its fetcher will call."""
    from kafka import codec

    has = {"gzip": codec.has_gzip, "snappy": codec.has_snappy}
    has |= {"lz4": codec.has_lz4, "zstd": codec.has_zstd}
    if not has[name]():
        raise ImportError(f"kafka-python finds no {name} library")
    encode = getattr(codec, f"{name}_encode")
    decode = getattr(codec, f"{name}_decode")
    if encode is None or decode is None:
        raise ImportError(f"kafka-python has no {name} functions")
    if bytes(decode(encode(SAMPLE))) != SAMPLE:
        raise ValueError(f"{name} round trip changed the data")


def codec_support() -> list[CodecSupport]:
    """Every codec Kafka defines, tried here."""
    found = []
    for name, package in CODEC_PACKAGES.items():
        try:
            _round_trip(name)
            found.append(CodecSupport(name, True, _version(package)))
        except Exception as exc:  # noqa: BLE001 - any failure means: cannot read this codec
            hint = f" (pip install {package})" if package else ""
            found.append(CodecSupport(name, False, f"{type(exc).__name__}: {exc}{hint}"))
    return found


def crc_support() -> tuple[bool, str]:
    """(fast, detail): whether record-batch CRC-32C checks run in C."""
    from kafka.record import util

    if getattr(util, "crc32c_c", None) is not None:
        return True, f"C extension ({_version('crc32c')})"
    return False, "pure Python (slow: ~50x; pip install crc32c)"


def describe() -> list[str]:
    """Lines for people (`warden config check`)."""
    lines = [f"{c.name}: {'yes' if c.readable else 'NO'} ({c.detail})" for c in codec_support()]
    lines.append(f"CRC-32C checks: {crc_support()[1]}")
    return lines


def log_support() -> None:
    """One log line at `warden run` start; a warning for each codec it cannot read, since its
    batches will be dead-lettered (as undecodable) instead of stored."""
    codecs = codec_support()
    fast, crc = crc_support()
    log.info(
        "kafka_codecs",
        readable=[c.name for c in codecs if c.readable],
        unreadable=[c.name for c in codecs if not c.readable],
        crc32c=crc,
    )
    for c in codecs:
        if not c.readable:
            log.warning(
                "kafka_codec_unavailable",
                codec=c.name,
                detail=c.detail,
                effect="batches compressed with it are dead-lettered as undecodable",
            )
    if not fast:
        log.warning("kafka_crc_slow", detail=crc)

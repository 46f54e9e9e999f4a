"""Multi-lane MD5 with SHA-256 alongside (``silverlining._native._md5lanes`` and
``node/domain/md5lanes.py``): every kernel the CPU has gives hashlib's digests, MD5 and
SHA-256, for any mix of lengths, offsets and partial blocks; misuse is refused; the lane
thread gives each concurrent stream its own digests, survives abandoned streams; and the
real node's ETags for concurrent large uploads are their MD5s, while a concurrent signed
upload whose payload does not match its signed SHA-256 is refused."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from silverlining.node.domain import md5lanes
from silverlining.node.domain.checksums import Digests

native: Any = md5lanes._native


def test_the_extension_is_built() -> None:
    # The test command installs a C compiler; without the extension the node still works
    # (hashlib), but everything below would test the fallback only.
    assert native is not None, "silverlining._native._md5lanes was not built (gcc missing?)"
    assert native.LANES == 8
    assert "portable" in native.available_kernels()
    assert md5lanes.describe().startswith("MD5 in 8 SIMD lanes")


@pytest.fixture(params=native.available_kernels() if native is not None else [])
def kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    default = native.kernel()
    native.use_kernel(request.param)
    yield request.param
    native.use_kernel(default)


SIZES = (0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 4096, 65_536, 65_599)


def test_single_stream_matches_hashlib() -> None:
    rng = random.Random(7)
    for size in (*SIZES, 1 << 20):
        data = rng.randbytes(size)
        state = native.MD5()
        reference = hashlib.md5()
        cut = rng.randint(0, size)
        for part in (data[:cut], data[cut:]):
            state.update(part)
            reference.update(part)
        assert state.hexdigest() == reference.hexdigest()
        assert state.digest() == reference.digest()
        assert native.MD5(data).hexdigest() == hashlib.md5(data).hexdigest()
    assert (state.name, state.digest_size, state.block_size) == ("md5", 16, 64)


def test_lanes_match_hashlib(kernel: str) -> None:
    rng = random.Random(hash(kernel) & 0xFFFF)
    for _ in range(150):
        count = rng.randint(1, 19)  # more than LANES: processed eight at a time
        states = [native.MD5() for _ in range(count)]
        references = [hashlib.md5() for _ in range(count)]
        for _round in range(rng.randint(1, 4)):
            jobs = []
            for state, reference in zip(states, references, strict=True):
                size = rng.choice((*SIZES, rng.randint(0, 300_000)))
                start = rng.randint(0, 3)  # any alignment in memory
                data = memoryview(rng.randbytes(size + 3))[start : start + size]
                reference.update(data)
                jobs.append((state, data))
            native.update_lanes(jobs)
            for state, reference in zip(states, references, strict=True):
                if rng.random() < 0.3:  # single-stream updates in between
                    extra = rng.randbytes(rng.randint(0, 200))
                    state.update(extra)
                    reference.update(extra)
        for state, reference in zip(states, references, strict=True):
            assert state.hexdigest() == reference.hexdigest(), kernel


def test_lanes_across_buffers_match_hashlib(kernel: str) -> None:
    """A state's data may be a list of buffers, read as if joined: blocks that straddle two
    buffers, empty buffers, and a state's own partial block before them."""
    rng = random.Random(hash(kernel) & 0xFFF)
    for _ in range(200):
        count = rng.randint(1, 11)
        starts = [rng.randbytes(rng.randint(0, 130)) for _ in range(count)]
        states = [native.MD5(start) for start in starts]
        references = [hashlib.md5(start) for start in starts]
        for _round in range(rng.randint(1, 3)):
            jobs: list[tuple[Any, Any]] = []
            for state, reference in zip(states, references, strict=True):
                pieces = [rng.randbytes(rng.choice((0, 1, 17, 63, 64, 65, 1000,
                                                    rng.randint(0, 70_000))))
                          for _ in range(rng.randint(0, 7))]
                for piece in pieces:
                    reference.update(piece)
                views = tuple(memoryview(p) for p in pieces)
                jobs.append((state, pieces if rng.random() < 0.5 else views))
            native.update_lanes(jobs)
        for state, reference in zip(states, references, strict=True):
            assert state.hexdigest() == reference.hexdigest(), kernel


def test_sha256_single_stream_matches_hashlib(kernel: str) -> None:
    rng = random.Random(11)
    for size in (*SIZES, 1 << 20):
        data = rng.randbytes(size)
        state = native.SHA256()
        cut = rng.randint(0, size)
        state.update(data[:cut])
        state.update(data[cut:])
        assert state.hexdigest() == hashlib.sha256(data).hexdigest(), (kernel, size)
        assert state.digest() == hashlib.sha256(data).digest()
        assert native.SHA256(data).copy().hexdigest() == hashlib.sha256(data).hexdigest()
    assert (state.name, state.digest_size, state.block_size) == ("sha256", 32, 64)


def test_lanes_with_sha256_match_hashlib(kernel: str) -> None:
    """MD5 and SHA-256 of the same bytes in one call: more SHA-256 streams than the fused
    kernel's slots, lanes without one, (MD5, data) pairs among triples, and SHA-256 states
    that are not block-aligned with their MD5 (hashed apart)."""
    rng = random.Random(hash(kernel) & 0xFFFFF)
    for _ in range(120):
        count = rng.randint(1, 19)
        md5s = [native.MD5() for _ in range(count)]
        shas = [native.SHA256() if rng.random() < 0.8 else None for _ in range(count)]
        ref_md5 = [hashlib.md5() for _ in range(count)]
        ref_sha = [hashlib.sha256() for _ in range(count)]
        for i in range(count):
            start = rng.randbytes(rng.choice((0, 0, 3, 64, 100)))
            md5s[i].update(start)
            ref_md5[i].update(start)
            own = start if rng.random() < 0.8 else start[:1]  # sometimes misaligned
            if shas[i] is not None:
                shas[i].update(own)
            ref_sha[i].update(own)
        for _round in range(rng.randint(1, 3)):
            jobs: list[Any] = []
            for i in range(count):
                pieces = [rng.randbytes(rng.choice((0, 1, 63, 64, 65, 4096,
                                                    rng.randint(0, 200_000))))
                          for _ in range(rng.randint(1, 4))]
                for piece in pieces:
                    ref_md5[i].update(piece)
                    ref_sha[i].update(piece)
                if shas[i] is None:
                    jobs.append((md5s[i], pieces) if rng.random() < 0.5 else
                                (md5s[i], pieces, None))
                else:
                    jobs.append((md5s[i], pieces, shas[i]))
            native.update_lanes(jobs)
        for i in range(count):
            assert md5s[i].hexdigest() == ref_md5[i].hexdigest(), kernel
            sha = shas[i]
            if sha is not None:
                assert sha.hexdigest() == ref_sha[i].hexdigest(), kernel


def test_sha256_rides_in_the_lanes_with_sha_ni() -> None:
    """With SHA-NI the node hashes signed payloads in the lanes (its SHA-256 states are the
    extension's); without it, hashlib's."""
    state = md5lanes.new_sha256()
    if native.sha256_kernel() == "portable":
        assert isinstance(state, type(hashlib.sha256()))
    else:
        assert isinstance(state, native.SHA256)
        assert "SHA-256 with them" in md5lanes.describe()


def test_copy_is_independent() -> None:
    state = native.MD5(b"abc")
    twin = state.copy()
    native.update_lanes([(state, b"d" * 100_000), (native.MD5(), b"x" * 100_000)])
    assert twin.hexdigest() == hashlib.md5(b"abc").hexdigest()
    assert state.hexdigest() == hashlib.md5(b"abc" + b"d" * 100_000).hexdigest()


def test_misuse_is_refused() -> None:
    state = native.MD5()
    with pytest.raises(RuntimeError, match="another thread"):
        native.update_lanes([(state, b"a" * 128), (state, b"b" * 128)])
    assert state.hexdigest() == hashlib.md5().hexdigest()  # nothing was hashed
    with pytest.raises(TypeError):
        native.update_lanes([(hashlib.md5(), b"a")])
    with pytest.raises(TypeError):
        native.update_lanes([(native.MD5(), "text")])
    with pytest.raises(TypeError):
        native.update_lanes([native.MD5()])
    with pytest.raises(TypeError):
        native.update_lanes([(native.MD5(), [b"a", "text"])])
    with pytest.raises(TypeError):
        native.MD5().update("text")
    with pytest.raises(ValueError, match="not available"):
        native.use_kernel("no-such-kernel")
    sha = native.SHA256()
    with pytest.raises(RuntimeError, match="another thread"):
        native.update_lanes([(native.MD5(), b"a" * 128, sha), (native.MD5(), b"b" * 128, sha)])
    assert sha.hexdigest() == hashlib.sha256().hexdigest()
    with pytest.raises(TypeError):
        native.update_lanes([(native.MD5(), b"a", hashlib.sha256())])
    with pytest.raises(TypeError):
        native.update_lanes([(native.MD5(), b"a", native.MD5())])
    with pytest.raises(TypeError):
        native.update_lanes([(native.MD5(), b"a", None, None)])
    native.update_lanes([])


def test_lane_thread_streams_concurrently() -> None:
    """Streams fed from many threads at once, in pieces of any size, each get their own
    digest; one abandoned midway neither blocks nor disturbs the rest."""

    def upload(seed: int) -> tuple[str, str]:
        rng = random.Random(seed)
        digests = Digests(payload_sha256=seed % 3 != 0, checksum_algorithm=None)
        reference = hashlib.md5()
        reference_sha = hashlib.sha256()
        for _ in range(rng.randint(1, 30)):
            pieces = [rng.randbytes(rng.choice((1, 1000, 65_536, 262_144, 300_001)))
                      for _ in range(rng.randint(1, 6))]
            digests.update_many(pieces)
            for piece in pieces:
                reference.update(piece)
                reference_sha.update(piece)
        if seed % 5 == 0:
            digests.abandon()
            return "", ""
        if seed % 3 != 0:
            assert digests.sha256 is not None
            assert digests.sha256.hexdigest() == reference_sha.hexdigest()
        else:
            assert digests.sha256 is None
        return digests.md5.hexdigest(), reference.hexdigest()

    with ThreadPoolExecutor(12) as pool:
        for got, expected in pool.map(upload, range(60)):
            assert got == expected
    assert not md5lanes.LANE_HASHER._open  # every stream was finished or abandoned


def test_dropped_digests_leave_no_open_stream() -> None:
    digests = Digests(payload_sha256=False, checksum_algorithm=None)
    digests.update_many([os.urandom(200_000)])
    assert digests._stream is not None
    del digests
    assert not md5lanes.LANE_HASHER._open


def test_concurrent_large_puts_have_md5_etags(s3: Any, bucket: str) -> None:
    """Through the real node: eight uploads at once (sharing lanes), some with a right and
    one with a wrong Content-MD5; the ETags are the bodies' MD5s, the wrong one is refused
    and not stored."""
    bodies = {f"big/{i}": os.urandom((3 << 20) + i * 4097) for i in range(8)}
    lock = threading.Lock()
    errors: list[str] = []

    def put(key: str) -> None:
        body = bodies[key]
        extra: dict[str, str] = {}
        if key.endswith(("1", "5")):
            extra["ContentMD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        if key.endswith("7"):
            extra["ContentMD5"] = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        except s3.exceptions.ClientError as exc:
            with lock:
                errors.append(f"{key}: {exc.response['Error']['Code']}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, bodies))
    assert errors == ["big/7: BadDigest"]
    for key, body in bodies.items():
        if key == "big/7":
            with pytest.raises(s3.exceptions.ClientError):
                s3.head_object(Bucket=bucket, Key=key)
            continue
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body

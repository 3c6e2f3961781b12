"""The wire format: round trips, and nothing but ProtocolError for any bad input."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stream.errors import UserError
from stream.protocol import (
    ENCODINGS,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    MaskMessage,
    ProtocolError,
    StatusMessage,
    decode,
    encode_mask,
    encode_status,
    mask_topic,
    status_topic,
    validate_camera,
    validate_endpoint,
)

cameras = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True).filter(lambda c: c not in (".", ".."))
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _good(encoding: str = "packbits", h: int = 6, w: int = 10, camera: str = "cam0") -> list[bytes]:
    mask = (np.arange(h * w).reshape(h, w) % 3 == 0).astype(np.uint8)
    return [bytes(p) for p in encode_mask(camera, 7, mask, encoding=encoding, t_capture=1.0, t_inference_done=2.0, model_version="m1")]


def _with_header(parts: list[bytes], **changes: object) -> list[bytes]:
    h = json.loads(parts[1])
    for k, v in changes.items():
        if v is _DELETE:
            del h[k]
        else:
            h[k] = v
    return [parts[0], json.dumps(h).encode(), parts[2]]


_DELETE = object()


# ------------------------------------------------------------------ round trips


@fast
@given(
    mask=st.integers(1, 40).flatmap(lambda h: st.integers(1, 40).flatmap(lambda w: arrays(np.uint8, (h, w), elements=st.sampled_from([0, 1, 7, 255])))),
    encoding=st.sampled_from(ENCODINGS),
    camera=cameras,
    seq=st.integers(0, 2**63 - 1),
    as_bool=st.booleans(),
)
def test_round_trip(mask: np.ndarray, encoding: str, camera: str, seq: int, as_bool: bool) -> None:
    src = mask > 0 if as_bool else mask
    now = time.time()
    parts = encode_mask(camera, seq, src, encoding=encoding, t_capture=now - 0.01, t_inference_done=now - 0.005, model_version="v1")
    assert bytes(parts[0]) == b"mask/" + camera.encode() + b"/"
    msg = decode(parts, t_receive=now + 0.02)
    assert isinstance(msg, MaskMessage)
    assert msg.camera == camera and msg.seq == seq and msg.encoding == encoding
    assert (msg.height, msg.width) == mask.shape
    assert msg.mask.dtype == np.uint8 and msg.mask.shape == mask.shape
    np.testing.assert_array_equal(msg.mask, np.where(mask > 0, 255, 0))
    assert msg.fg_ratio == pytest.approx(np.count_nonzero(mask) / mask.size, abs=1e-6)
    assert msg.latency == pytest.approx(0.03, abs=1e-6)
    assert msg.age(now) == pytest.approx(0.01, abs=1e-6)
    assert msg.t_capture <= msg.t_inference_done <= msg.t_publish


def test_header_is_compact_json_with_all_fields() -> None:
    parts = encode_mask("cam1", 3, np.ones((4, 5), np.uint8), t_capture=10.0, t_inference_done=10.5, model_version="abc")
    head = bytes(parts[1])
    assert b" " not in head
    h = json.loads(head)
    assert set(h) == {"v", "camera", "seq", "t_capture", "t_inference_done", "t_publish", "width", "height", "encoding", "model_version", "fg_ratio"}
    assert h["v"] == PROTOCOL_VERSION and h["encoding"] == "packbits" and (h["width"], h["height"]) == (5, 4) and h["fg_ratio"] == 1.0


def test_packbits_is_smaller_than_raw_for_a_typical_mask() -> None:
    mask = np.zeros((240, 320), np.uint8)
    cv2.circle(mask, (160, 120), 40, 255, -1)
    raw = encode_mask("c", 0, mask, encoding="raw", t_capture=0, t_inference_done=0)
    packed = encode_mask("c", 0, mask, encoding="packbits", t_capture=0, t_inference_done=0)
    assert len(raw[2]) == 320 * 240
    assert len(packed[2]) < len(raw[2]) / 20


def test_status_round_trip() -> None:
    msg = decode(encode_status("cam_2", "online", t=5.0, fps=24.5, model_version="m"))
    assert isinstance(msg, StatusMessage)
    assert (msg.camera, msg.state, msg.t, msg.online) == ("cam_2", "online", 5.0, True)
    assert msg.fields == {"fps": 24.5, "model_version": "m"}
    off = decode(encode_status("cam_2", "offline", reason="shutdown"))
    assert off.state == "offline" and off.fields == {"reason": "shutdown"} and not off.online


def test_topics_and_camera_ids() -> None:
    assert mask_topic("cam1") == b"mask/cam1/" and status_topic("cam1") == b"status/cam1/"
    assert not mask_topic("cam10").startswith(mask_topic("cam1"))
    assert validate_camera("...") == "..." and validate_camera(".cam") == ".cam"  # plain names
    for bad in ["", "a/b", "x" * 65, "caméra", "a b", None, 5, ".", ".."]:  # '..' as a folder leaves recordings/
        with pytest.raises(ProtocolError):
            validate_camera(bad)


def test_encode_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="encoding"):
        encode_mask("c", 0, np.zeros((2, 2), np.uint8), encoding="jpeg", t_capture=0, t_inference_done=0)
    with pytest.raises(ValueError, match="2-D"):
        encode_mask("c", 0, np.zeros((2, 2, 3), np.uint8), t_capture=0, t_inference_done=0)
    with pytest.raises(ValueError, match="uint8 or bool"):
        encode_mask("c", 0, np.zeros((2, 2), np.float32), t_capture=0, t_inference_done=0)
    with pytest.raises(ValueError, match="seq"):
        encode_mask("c", -1, np.zeros((2, 2), np.uint8), t_capture=0, t_inference_done=0)
    with pytest.raises(ValueError):
        encode_status("c", "sleeping")


# ------------------------------------------------------------------ targeted bad input


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p[:2], "3 frames"),
        (lambda p: p + [b""], "3 frames"),
        (lambda p: [b"mask/cam0", p[1], p[2]], "topic"),
        (lambda p: [b"video/cam0/", p[1], p[2]], "neither"),
        (lambda p: [b"mask/other/", p[1], p[2]], "does not match"),
        (lambda p: [p[0], b"\xff\xfe", p[2]], "UTF-8"),
        (lambda p: [p[0], b"{not json", p[2]], "JSON"),
        (lambda p: [p[0], b"[1, 2]", p[2]], "not an object"),
        (lambda p: [p[0], b"[" * 30000 + b"]" * 30000, p[2]], "JSON"),
        (lambda p: [p[0], b" " * (MAX_HEADER_BYTES + 1), p[2]], "max"),
        (lambda p: _with_header(p, v=2), "version"),
        (lambda p: _with_header(p, v=True), "version"),
        (lambda p: _with_header(p, v=_DELETE), "version"),
        (lambda p: _with_header(p, seq=_DELETE), "seq"),
        (lambda p: _with_header(p, seq="7"), "seq"),
        (lambda p: _with_header(p, seq=-1), "seq"),
        (lambda p: _with_header(p, width=0), "width"),
        (lambda p: _with_header(p, height=16385), "height"),
        (lambda p: _with_header(p, width=1.5), "width"),
        (lambda p: _with_header(p, encoding="jpeg"), "encoding"),
        (lambda p: _with_header(p, t_capture="now"), "t_capture"),
        (lambda p: _with_header(p, t_capture=True), "t_capture"),
        (lambda p: _with_header(p, fg_ratio=1.5), "fg_ratio"),
        (lambda p: _with_header(p, model_version=3), "model_version"),
        (lambda p: [p[0], p[1].replace(b'"t_capture":1.0', b'"t_capture":NaN'), p[2]], "non-finite"),
        (lambda p: [p[0], p[1].replace(b'"t_capture":1.0', b'"t_capture":1e999'), p[2]], "t_capture"),
        (lambda p: _with_header(p, width=11), "inflates"),
        (lambda p: [p[0], p[1], p[2][:-3]], "zlib"),
        (lambda p: [p[0], p[1], p[2] + b"x"], "padded"),
        (lambda p: [p[0], p[1], b"not zlib at all"], "zlib"),
        (lambda p: [p[0], p[1], None], "not a bytes-like"),
    ],
)
def test_bad_messages_raise_protocol_error(mutate, match) -> None:  # noqa: ANN001
    with pytest.raises(ProtocolError, match=match):
        decode(mutate(_good()))


def test_bad_raw_and_png_payloads() -> None:
    raw = _good("raw")
    with pytest.raises(ProtocolError, match="raw payload"):
        decode([raw[0], raw[1], raw[2][:-1]])
    png = _good("png")
    with pytest.raises(ProtocolError, match="header says"):
        decode(_with_header(png, width=11))
    with pytest.raises(ProtocolError, match="PNG signature"):
        decode([png[0], png[1], b"garbage"])
    rgb = cv2.imencode(".png", np.zeros((6, 10, 3), np.uint8))[1].tobytes()
    with pytest.raises(ProtocolError, match="grayscale"):
        decode([png[0], png[1], rgb])
    with pytest.raises(ProtocolError):  # valid IHDR, corrupt image data
        decode([png[0], png[1], png[2][:40] + b"\0" * 30])


def test_zlib_bomb_is_bounded() -> None:
    bomb = zlib.compress(b"\xff" * (200 * 1024 * 1024), 9)  # 200 MiB of ones in ~200 KiB
    assert len(bomb) < 300_000
    parts = _with_header(_good(), width=100, height=100)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="inflates"):
            decode([parts[0], parts[1], bomb])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, peak  # refused after a bounded inflate, not after 200 MiB (a timing check before)


def test_png_bomb_is_rejected_before_decoding() -> None:
    png = _good("png")
    ihdr = struct.pack(">4sIIBBBBB", b"IHDR", 60000, 60000, 8, 0, 0, 0, 0)
    fake = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + b"\0" * 16
    with pytest.raises(ProtocolError, match="60000x60000"):
        decode([png[0], png[1], fake])


def test_status_validation() -> None:
    good = encode_status("c", "online", t=1.0)
    with pytest.raises(ProtocolError, match="state"):
        decode(_with_header(good, state="asleep"))
    with pytest.raises(ProtocolError, match="empty"):
        decode([good[0], good[1], b"x"])
    with pytest.raises(ProtocolError, match="'t'"):
        decode(_with_header(good, t=_DELETE))


# ------------------------------------------------------------------ fuzzing


def _only_protocol_error(parts: object) -> None:
    try:
        msg = decode(parts)  # type: ignore[arg-type]
    except ProtocolError:
        return
    assert isinstance(msg, (MaskMessage, StatusMessage))
    if isinstance(msg, MaskMessage):
        assert msg.mask.shape == (msg.height, msg.width) and set(np.unique(msg.mask)) <= {0, 255}


@fast
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_fuzz_random_frames(parts: list[bytes]) -> None:
    _only_protocol_error(parts)


@fast
@given(
    topic=st.sampled_from([b"mask/cam0/", b"status/cam0/", b"mask/", b"mask//", b"mask/cam0"]) | st.binary(max_size=20),
    header=st.dictionaries(
        st.sampled_from(["v", "camera", "seq", "t_capture", "t_inference_done", "t_publish", "width", "height", "encoding", "model_version", "fg_ratio", "state", "t", "x"]),
        st.none() | st.booleans() | st.integers(-5, 2**70) | st.floats(allow_nan=False) | st.text(max_size=10) | st.sampled_from(list(ENCODINGS) + ["cam0", "online", 1]) | st.lists(st.integers(), max_size=2),
    ),
    payload=st.binary(max_size=64),
)
def test_fuzz_random_json_headers(topic: bytes, header: dict, payload: bytes) -> None:
    _only_protocol_error([topic, json.dumps(header).encode(), payload])


@fast
@given(encoding=st.sampled_from(ENCODINGS), cut=st.integers(0, 10_000), flip=st.integers(0, 10_000), which=st.integers(0, 2))
def test_fuzz_truncated_and_corrupted_good_messages(encoding: str, cut: int, flip: int, which: int) -> None:
    parts = [bytearray(p) for p in _good(encoding, 12, 17)]
    target = parts[which]
    if target:
        target[flip % len(target)] ^= 0x5A
    parts[2] = parts[2][: cut % (len(parts[2]) + 1)]
    _only_protocol_error([bytes(p) for p in parts])


@fast
@given(st.one_of(st.none(), st.integers(), st.text(), st.binary(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(), st.integers(), max_size=2)))
def test_fuzz_wrong_python_types(obj: object) -> None:
    _only_protocol_error(obj)


# ------------------------------------------------------------------ endpoints


def test_validate_endpoint(tmp_path) -> None:  # noqa: ANN001
    assert validate_endpoint("tcp://127.0.0.1:5556") == "tcp://127.0.0.1:5556"
    assert validate_endpoint("tcp://localhost:5556")
    assert validate_endpoint("tcp://*:5556", bind=True)
    assert validate_endpoint("tcp://127.0.0.1:*", bind=True)
    assert validate_endpoint(f"ipc://{tmp_path}/s.sock", bind=True)
    assert validate_endpoint("inproc://x")
    for bad, match in [
        ("foo://x", "scheme"),
        ("127.0.0.1:5556", "not a ZeroMQ address"),
        ("tcp://127.0.0.1", "port"),
        ("tcp://127.0.0.1:http", "port"),
        ("tcp://127.0.0.1:70000", "port"),
        ("tcp://*:5556", "only be bound"),
        ("tcp://no-such-host.invalid:5556", "cannot resolve"),
        ("tcp://", "empty"),
    ]:
        with pytest.raises(UserError, match=match):
            validate_endpoint(bad)
    with pytest.raises(UserError, match="does not exist"):
        validate_endpoint(f"ipc://{tmp_path}/missing/s.sock", bind=True)

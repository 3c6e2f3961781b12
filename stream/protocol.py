"""The sparsecam wire format: the one module both the publisher and every subscriber import.

A mask is a ZeroMQ multipart message ``[topic, header, payload]``:

* ``topic``   ``mask/<camera>/`` (the trailing slash keeps a SUB on ``mask/cam1/`` from
  matching ``cam10``); status messages use ``status/<camera>/``.
* ``header``  a compact UTF-8 JSON object: ``v`` (PROTOCOL_VERSION), ``camera``, ``seq``,
  ``t_capture``, ``t_inference_done``, ``t_publish`` (unix seconds), ``width``, ``height``,
  ``encoding``, ``model_version``, ``fg_ratio``.
* ``payload`` the mask: ``raw`` (H*W bytes 0/255), ``packbits`` (``np.packbits(mask > 0)``
  then zlib level 1, the default) or ``png`` (8-bit grayscale 0/255).

A status message is ``[status/<camera>/, {"v", "camera", "state": "online"|"offline", "t",
...optional fields (the daemon sends model_version, provider, reason)}, b""]``.

:func:`decode` validates everything and raises only :class:`ProtocolError` for bad input: a
subscriber can feed it anything that arrives on a socket. Decompression is always bounded.
"""

from __future__ import annotations

import json
import math
import re
import socket
import stat
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import numpy as np

from stream.errors import UserError

PROTOCOL_VERSION = 1
ENCODINGS = ("raw", "packbits", "png")
DEFAULT_ENCODING = "packbits"
MAX_DIM = 16384
MAX_PIXELS = 64 * 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_TOPIC_BYTES = 128
STATES = ("online", "offline")
MASK_PREFIX = b"mask/"
STATUS_PREFIX = b"status/"

_CAMERA_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Part = Union[bytes, bytearray, memoryview, Any]  # Any: zmq.Frame (buffer protocol)


class ProtocolError(ValueError):
    """A message that does not follow the sparsecam wire format (the only error decode raises)."""


# --------------------------------------------------------------------------- topics


def validate_camera(camera: object) -> str:
    """Return ``camera`` if it is a valid id, else raise ProtocolError (a ValueError).

    The one rule for camera ids, everywhere (config, topics, recordings and model folders):
    ``[A-Za-z0-9_.-]{1,64}`` but not ``.`` or ``..``, which as folder names would leave the
    recordings or models folder."""
    if not isinstance(camera, str) or not _CAMERA_RE.match(camera) or camera in (".", ".."):
        raise ProtocolError(f"invalid camera id {camera!r}: use 1-64 characters from A-Z a-z 0-9 _ . - (not '.' or '..')")
    return camera


def mask_topic(camera: str) -> bytes:
    """``b"mask/<camera>/"``: subscribe to it to receive one camera's masks."""
    return MASK_PREFIX + validate_camera(camera).encode("ascii") + b"/"


def status_topic(camera: str) -> bytes:
    """``b"status/<camera>/"``: one camera's online/offline messages."""
    return STATUS_PREFIX + validate_camera(camera).encode("ascii") + b"/"


# --------------------------------------------------------------------------- messages


@dataclass
class MaskMessage:
    """One decoded mask; ``mask`` is uint8 (height, width) with values 0 or 255."""

    camera: str
    seq: int
    t_capture: float
    t_inference_done: float
    t_publish: float
    width: int
    height: int
    encoding: str
    model_version: str
    fg_ratio: float
    mask: np.ndarray = field(repr=False)
    t_receive: float = 0.0
    payload_bytes: int = 0

    def age(self, now: float | None = None) -> float:
        """Seconds since capture (by the publisher's clock: keep hosts NTP-synced)."""
        return (time.time() if now is None else now) - self.t_capture

    @property
    def latency(self) -> float:
        """End-to-end seconds from capture to receipt (t_receive - t_capture)."""
        return self.t_receive - self.t_capture


@dataclass
class StatusMessage:
    """A camera going online (sent periodically as a heartbeat) or offline."""

    camera: str
    state: str
    t: float
    fields: dict[str, Any] = field(default_factory=dict)
    t_receive: float = 0.0

    @property
    def online(self) -> bool:
        return self.state == "online"


# --------------------------------------------------------------------------- encoding


def _as_binary(mask: np.ndarray) -> np.ndarray:
    """Boolean (H, W) view of a uint8/bool mask; raises ValueError for anything else."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    h, w = mask.shape
    if not (1 <= h <= MAX_DIM and 1 <= w <= MAX_DIM) or h * w > MAX_PIXELS:
        raise ValueError(f"mask size {w}x{h} outside 1..{MAX_DIM} per side / {MAX_PIXELS} pixels")
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 or bool, got {mask.dtype}")
    return mask > 0


def encode_payload(binary: np.ndarray, encoding: str) -> bytes | memoryview:
    """Encode a boolean (H, W) mask as ``encoding``."""
    if encoding == "packbits":
        return zlib.compress(np.packbits(binary).tobytes(), 1)
    raw = np.ascontiguousarray(binary).view(np.uint8) * np.uint8(255)
    if encoding == "raw":
        return memoryview(raw).cast("B")
    if encoding == "png":
        import cv2

        ok, buf = cv2.imencode(".png", raw)
        if not ok:  # pragma: no cover - cv2 always encodes a 2-D uint8 array
            raise ValueError("cv2.imencode failed to write the mask as PNG")
        return buf.tobytes()
    raise ValueError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_mask(
    camera: str,
    seq: int,
    mask: np.ndarray,
    *,
    encoding: str = DEFAULT_ENCODING,
    t_capture: float,
    t_inference_done: float,
    model_version: str = "",
    fg_ratio: float | None = None,
    t_publish: float | None = None,
) -> list[bytes | memoryview]:
    """The multipart message for one mask (``t_publish`` defaults to now).

    ``mask`` is (H, W) uint8 (any non-zero is foreground) or bool. Raises ValueError
    (ProtocolError for a bad camera id) for arguments that cannot be encoded.
    """
    topic = mask_topic(camera)
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
    if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)) or seq < 0:
        raise ValueError(f"seq must be a non-negative int, got {seq!r}")
    binary = _as_binary(mask)
    h, w = binary.shape
    if fg_ratio is None:
        fg_ratio = float(np.count_nonzero(binary)) / (h * w)
    header = {
        "v": PROTOCOL_VERSION,
        "camera": camera,
        "seq": int(seq),
        "t_capture": float(t_capture),
        "t_inference_done": float(t_inference_done),
        "t_publish": float(time.time() if t_publish is None else t_publish),
        "width": w,
        "height": h,
        "encoding": encoding,
        "model_version": str(model_version),
        "fg_ratio": round(float(fg_ratio), 6),
    }
    try:
        head = _dumps(header)
    except ValueError as exc:  # NaN / inf times
        raise ValueError(f"cannot encode header: {exc}") from None
    return [topic, head, encode_payload(binary, encoding)]


def encode_status(camera: str, state: str, *, t: float | None = None, **fields: Any) -> list[bytes]:
    """The multipart message for a status change; ``fields`` must be JSON-serialisable."""
    topic = status_topic(camera)
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    reserved = {"v", "camera", "state", "t"} & set(fields)
    if reserved:
        raise ValueError(f"status fields may not override {sorted(reserved)}")
    header = {"v": PROTOCOL_VERSION, "camera": camera, "state": state, "t": float(time.time() if t is None else t)}
    header.update({k: v for k, v in fields.items() if v is not None})
    try:
        head = _dumps(header)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"status fields are not JSON-serialisable: {exc}") from None
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"status header is {len(head)} bytes (max {MAX_HEADER_BYTES})")
    return [topic, head, b""]


# --------------------------------------------------------------------------- decoding


def _buffer(part: Part, what: str) -> memoryview:
    try:
        view = memoryview(part)
    except TypeError:
        raise ProtocolError(f"{what} is a {type(part).__name__}, not a bytes-like frame") from None
    if view.ndim != 1 or view.itemsize != 1:
        try:
            view = view.cast("B")
        except TypeError:
            raise ProtocolError(f"{what} is not a flat byte buffer") from None
    return view


def _reject_constant(name: str) -> float:
    raise ProtocolError(f"header contains non-finite number {name}")


def _parse_header(raw: memoryview) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {len(raw)} bytes (max {MAX_HEADER_BYTES})")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("header is not valid UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ProtocolError(f"header is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"header is a JSON {type(obj).__name__}, not an object")
    if "v" not in obj:
        raise ProtocolError("header has no protocol version 'v'")
    if type(obj["v"]) is not int or obj["v"] != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {obj['v']!r} (this client speaks {PROTOCOL_VERSION})")
    return obj


def _int_field(h: dict[str, Any], key: str, lo: int, hi: int) -> int:
    if key not in h:
        raise ProtocolError(f"header is missing {key!r}")
    val = h[key]
    if type(val) is not int:
        raise ProtocolError(f"header field {key!r} must be an integer, got {type(val).__name__}")
    if not lo <= val <= hi:
        raise ProtocolError(f"header field {key!r}={val} outside {lo}..{hi}")
    return val


def _float_field(h: dict[str, Any], key: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if key not in h:
        raise ProtocolError(f"header is missing {key!r}")
    val = h[key]
    if type(val) not in (int, float):
        raise ProtocolError(f"header field {key!r} must be a number, got {type(val).__name__}")
    val = float(val)
    if not math.isfinite(val) or not lo <= val <= hi:
        raise ProtocolError(f"header field {key!r}={val} is out of range")
    return val


def _str_field(h: dict[str, Any], key: str, max_len: int = 256) -> str:
    if key not in h:
        raise ProtocolError(f"header is missing {key!r}")
    val = h[key]
    if not isinstance(val, str):
        raise ProtocolError(f"header field {key!r} must be a string, got {type(val).__name__}")
    if len(val) > max_len:
        raise ProtocolError(f"header field {key!r} is longer than {max_len} characters")
    return val


def _inflate(payload: memoryview, expected: int) -> bytes:
    """zlib-decompress exactly ``expected`` bytes, never more (zip-bomb safe)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(payload, expected + 1)
    except zlib.error as exc:
        raise ProtocolError(f"packbits payload is not valid zlib data: {exc}") from None
    if len(out) != expected or d.unconsumed_tail:
        size = f"more than {expected}" if len(out) > expected or d.unconsumed_tail else str(len(out))
        raise ProtocolError(f"packbits payload inflates to {size} bytes, expected {expected}")
    if not d.eof or d.unused_data:
        raise ProtocolError("packbits payload is a truncated or padded zlib stream")
    return out


def _png_size(payload: memoryview) -> tuple[int, int]:
    """(width, height) from the IHDR of an 8-bit grayscale PNG, checked before decoding."""
    head = bytes(payload[:33])
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ProtocolError("png payload does not start with a PNG signature and IHDR chunk")
    w, h, depth, color = struct.unpack(">IIBB", head[16:26])
    if depth != 8 or color != 0:
        raise ProtocolError(f"png payload must be 8-bit grayscale (got bit depth {depth}, color type {color})")
    return w, h


def _decode_payload(payload: memoryview, encoding: str, width: int, height: int) -> np.ndarray:
    n = width * height
    if encoding == "raw":
        if len(payload) != n:
            raise ProtocolError(f"raw payload is {len(payload)} bytes, expected {width}x{height}={n}")
        flat = np.frombuffer(payload, dtype=np.uint8)
    elif encoding == "packbits":
        packed = np.frombuffer(_inflate(payload, (n + 7) // 8), dtype=np.uint8)
        return (np.unpackbits(packed, count=n).reshape(height, width) * np.uint8(255)).astype(np.uint8, copy=False)
    else:  # png
        pw, ph = _png_size(payload)
        if (pw, ph) != (width, height):
            raise ProtocolError(f"png payload is {pw}x{ph}, header says {width}x{height}")
        import cv2

        try:
            img = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except Exception as exc:  # cv2.error on corrupt data
            raise ProtocolError(f"png payload does not decode: {str(exc)[:80]}") from None
        if img is None or img.dtype != np.uint8 or img.shape != (height, width):
            raise ProtocolError(f"png payload does not decode to an 8-bit {width}x{height} image")
        flat = img.reshape(-1)
    out = np.empty(n, dtype=np.uint8)
    np.not_equal(flat, 0, out=out.view(np.bool_))
    out *= 255
    return out.reshape(height, width)


def _topic_camera(topic: memoryview) -> tuple[str, str]:
    raw = bytes(topic)
    if len(raw) > MAX_TOPIC_BYTES:
        raise ProtocolError(f"topic is {len(raw)} bytes (max {MAX_TOPIC_BYTES})")
    for kind, prefix in (("mask", MASK_PREFIX), ("status", STATUS_PREFIX)):
        if raw.startswith(prefix):
            if not raw.endswith(b"/") or len(raw) <= len(prefix) + 1:
                raise ProtocolError(f"topic {raw[:80]!r} is not {prefix.decode()}<camera>/")
            try:
                camera = raw[len(prefix) : -1].decode("ascii")
            except UnicodeDecodeError:
                raise ProtocolError(f"topic {raw[:80]!r} has a non-ASCII camera id") from None
            return kind, validate_camera(camera)
    raise ProtocolError(f"topic {raw[:40]!r} is neither mask/<camera>/ nor status/<camera>/")


def decode(parts: Sequence[Part], t_receive: float | None = None) -> MaskMessage | StatusMessage:
    """Decode and fully validate one multipart message; raises only ProtocolError."""
    try:
        return _decode(parts, time.time() if t_receive is None else float(t_receive))
    except ProtocolError:
        raise
    except MemoryError:
        raise ProtocolError("message too large to decode") from None
    except Exception as exc:  # defence in depth: no other exception type ever escapes
        raise ProtocolError(f"malformed message ({type(exc).__name__}: {str(exc)[:80]})") from None


def _decode(parts: Sequence[Part], t_receive: float) -> MaskMessage | StatusMessage:
    if isinstance(parts, (bytes, bytearray, memoryview, str)):
        raise ProtocolError("expected a list of 3 frames, got a single buffer")
    try:
        parts = list(parts)
    except TypeError:
        raise ProtocolError(f"expected a list of 3 frames, got {type(parts).__name__}") from None
    if len(parts) != 3:
        raise ProtocolError(f"expected 3 frames [topic, header, payload], got {len(parts)}")
    topic, head, payload = (_buffer(p, name) for p, name in zip(parts, ("topic", "header", "payload")))
    kind, topic_camera = _topic_camera(topic)
    h = _parse_header(head)
    camera = _str_field(h, "camera", 64)
    if camera != topic_camera:
        raise ProtocolError(f"header camera {camera!r} does not match topic camera {topic_camera!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload is {len(payload)} bytes (max {MAX_PAYLOAD_BYTES})")

    if kind == "status":
        state = _str_field(h, "state", 16)
        if state not in STATES:
            raise ProtocolError(f"status state {state!r} is not one of {STATES}")
        t = _float_field(h, "t")
        if len(payload):
            raise ProtocolError(f"status payload must be empty, got {len(payload)} bytes")
        extra = {k: v for k, v in h.items() if k not in ("v", "camera", "state", "t")}
        return StatusMessage(camera=camera, state=state, t=t, fields=extra, t_receive=t_receive)

    seq = _int_field(h, "seq", 0, 2**63 - 1)
    width = _int_field(h, "width", 1, MAX_DIM)
    height = _int_field(h, "height", 1, MAX_DIM)
    if width * height > MAX_PIXELS:
        raise ProtocolError(f"mask {width}x{height} has more than {MAX_PIXELS} pixels")
    encoding = _str_field(h, "encoding", 16)
    if encoding not in ENCODINGS:
        raise ProtocolError(f"unknown encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
    t_capture = _float_field(h, "t_capture")
    t_inference_done = _float_field(h, "t_inference_done")
    t_publish = _float_field(h, "t_publish")
    model_version = _str_field(h, "model_version")
    fg_ratio = _float_field(h, "fg_ratio", 0.0, 1.0)
    mask = _decode_payload(payload, encoding, width, height)
    return MaskMessage(
        camera=camera,
        seq=seq,
        t_capture=t_capture,
        t_inference_done=t_inference_done,
        t_publish=t_publish,
        width=width,
        height=height,
        encoding=encoding,
        model_version=model_version,
        fg_ratio=fg_ratio,
        mask=mask,
        t_receive=t_receive,
        payload_bytes=len(payload),
    )


# --------------------------------------------------------------------------- endpoints


def ipc_file(endpoint: str) -> str | None:
    """The socket file of an ``ipc://`` endpoint; None for other transports and for ``ipc://@name``
    (Linux's abstract namespace: no file)."""
    path = endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else ""
    return path if path and not path.startswith("@") else None


def validate_endpoint(endpoint: str, *, bind: bool = False) -> str:
    """Check a ZeroMQ endpoint up front; raise UserError naming it when it cannot work.

    Accepts ``tcp://HOST:PORT`` (bind: HOST may be ``*`` or an interface, PORT may be ``*``),
    ``ipc://PATH`` and ``inproc://NAME``. For connect, HOST must resolve.
    """
    hint = "use tcp://HOST:PORT, ipc:///path/to/socket or inproc://name"
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise UserError(f"endpoint {endpoint!r} is not a ZeroMQ address: {hint}")
    scheme, _, rest = endpoint.partition("://")
    if scheme not in ("tcp", "ipc", "inproc"):
        raise UserError(f"endpoint {endpoint!r}: unsupported scheme {scheme!r}: {hint}")
    if not rest:
        raise UserError(f"endpoint {endpoint!r} has an empty address: {hint}")
    if scheme == "ipc":
        path = ipc_file(endpoint)
        if bind and path is not None:
            import os

            parent = os.path.dirname(path) or "."
            if not os.path.isdir(parent):
                raise UserError(f"endpoint {endpoint!r}: folder {parent} does not exist (create it first)")
            if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):  # binding unlinks the path
                raise UserError(f"endpoint {endpoint!r}: {path} exists and is not a socket; binding would delete it, "
                                "so pick a path of its own (e.g. /run/sparsecam/masks.sock)")
        return endpoint
    if scheme == "inproc":
        return endpoint
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise UserError(f"endpoint {endpoint!r} needs a host and a port: tcp://HOST:PORT")
    if ";" in host:  # tcp://source;host:port (connect with a source address)
        host = host.split(";", 1)[1]
    if not (bind and port == "*"):
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UserError(f"endpoint {endpoint!r}: port {port!r} must be an integer 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if bind:
        return endpoint  # '*', an IP or an interface name: zmq reports the rest at bind time
    if host == "*":
        raise UserError(f"endpoint {endpoint!r}: '*' can only be bound, connect to a host name or IP")
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UserError(f"endpoint {endpoint!r}: cannot resolve host {host!r} ({exc})") from None
    return endpoint

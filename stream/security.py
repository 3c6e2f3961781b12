"""CurveZMQ for the mask bus, built on ``zmq.auth``: key pairs, an allow-list of clients.

Opt-in. The daemon (server) holds a secret key and a folder of allowed client public keys;
a subscriber holds its own key pair and the server's public key. A subscriber without an
allowed key completes no handshake and receives nothing. ``sparsecam keygen DIR`` writes key
pairs in zmq.auth's certificate format (``NAME.key`` public, ``NAME.key_secret`` secret).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from stream.argtypes import Parser
from stream.errors import UserError

log = logging.getLogger("sparsecam.security")


def load_key(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret or None) of a CurveZMQ key file; a missing or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CurveZMQ key file {path} does not exist (create keys with `sparsecam keygen DIR`)")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a CurveZMQ certificate: {exc}") from None
    if secret and not secret_key:
        raise UserError(f"{path} holds no secret key; give the .key_secret file")
    return public, secret_key


def check_allowed_clients(folder: Path) -> Path:
    """``folder`` if it holds subscribers' public ``*.key`` files, else a UserError."""
    if not folder.is_dir() or not any(folder.glob("*.key")):
        raise UserError(f"allowed-clients folder {folder} has no *.key public keys; copy each subscriber's NAME.key there")
    return folder


KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    """Create DIR/NAME.key (public, to share) and DIR/NAME.key_secret (keep private, mode 600)."""
    if not zmq.has("curve"):
        raise UserError("this libzmq was built without CurveZMQ support")
    if not KEY_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (a file name stem, no folders)")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{directory} is a file; pass a folder for the key files") from None
    except OSError as exc:
        raise UserError(f"cannot create the key folder {directory}: {exc.strerror}; pass another folder") from None
    public, secret = Path(directory / f"{name}.key"), Path(directory / f"{name}.key_secret")
    if public.exists() or secret.exists():
        raise UserError(f"{public} or {secret} already exists; pick another name or folder (keys are never overwritten)")
    pub, sec = zmq.auth.create_certificates(str(directory), name)
    Path(sec).chmod(0o600)
    return Path(pub), Path(sec)


@dataclass
class CurveServer:
    """Server side: the authenticator thread plus the options to put on the PUB socket."""

    context: zmq.Context
    secret_key_file: Path
    allowed_clients_dir: Path

    def __post_init__(self) -> None:
        self.public, self.secret = load_key(self.secret_key_file, secret=True)
        allowed = check_allowed_clients(Path(self.allowed_clients_dir))
        self.auth = ThreadAuthenticator(self.context, log=logging.getLogger("sparsecam.zmq.auth"))
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(allowed))

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        self.auth.stop()


def apply_client(sock: zmq.Socket, client_secret_file: Path, server_public_file: Path) -> None:
    """Make a SUB socket a CurveZMQ client (before connect)."""
    pub, sec = load_key(client_secret_file, secret=True)
    server_pub, _ = load_key(server_public_file, secret=False)
    sock.curve_secretkey = sec
    sock.curve_publickey = pub
    sock.curve_serverkey = server_pub


def cli(argv: list[str]) -> int:
    p = Parser(prog="sparsecam keygen", description="Create a CurveZMQ key pair (zmq.auth certificate files).")
    p.add_argument("dir", type=Path, help="folder for the key files")
    p.add_argument("--name", default="server", help="file name stem (e.g. server, or a subscriber's name)")
    args = p.parse_args(argv)
    public, secret = keygen(args.dir, args.name)
    print(f"public key: {public}  (share it: servers give it to subscribers; subscribers give theirs to the server's allowed folder)")
    print(f"secret key: {secret}  (keep it private)")
    return 0

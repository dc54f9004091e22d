"""The device agent: answers the station on the serial console while the device is in provisioning mode.

States: blank -> keyed -> certified -> configured -> locked. Every step is idempotent (a station that retries
after a cable pull gets the same answer, not a second key), state is written atomically before it is
answered, and after `lock` every command but `hello` and `verify` (which change nothing) is refused for
good. The private key is made here and never leaves: it sits behind `KeyStore` (a file with owner-only
permissions; a secure element such as the ATECC608 can stand behind the same methods).
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.errors import FrameError, ProvisioningError, Refusal
from provisioning.framing import Deframer
from provisioning.protocol import OPS, VERSION, pack, unpack
from trust import pki
from trust.files import private_dirs

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SelfTest = Callable[[], dict[str, Any]]


class KeyStore(Protocol):
    def exists(self) -> bool: ...

    def generate(self) -> None: ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes: ...

    def csr(self, common_name: str) -> bytes: ...


class FileKeyStore:
    """A P-256 key in a PEM file readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def generate(self) -> None:
        pki.write_atomic(self.path, pki.key_pem(pki.make_key()), private=True)

    def _key(self) -> ec.EllipticCurvePrivateKey:
        key = pki.load_key(self.path)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key().public_key()

    def sign(self, data: bytes) -> bytes:
        return self._key().sign(data, ec.ECDSA(hashes.SHA256()))

    def csr(self, common_name: str) -> bytes:
        return pki.make_csr(self._key(), common_name).public_bytes(serialization.Encoding.PEM)


class DeviceAgent:
    def __init__(self, state_dir: Path, *, hardware_id: str, model: str, firmware: str, trusted_ca_pem: bytes,
                 self_tests: dict[str, SelfTest] | None = None, keystore: KeyStore | None = None) -> None:
        self.dir = private_dirs(state_dir)  # it holds the device key and key ring: 0700 whatever the umask
        self.hardware_id, self.model, self.firmware = hardware_id, model, firmware
        self.trusted_ca = x509.load_pem_x509_certificate(trusted_ca_pem)
        self.self_tests = self_tests or {}
        self.keys = keystore or FileKeyStore(self.dir / "device.key")
        self._deframer = Deframer()
        self._answers: OrderedDict[int, bytes] = OrderedDict()
        self.refused = 0
        self.state = self._load()

    # -- persistence -----------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        p = self.dir / "state.json"
        return json.loads(p.read_text()) if p.exists() else {"state": "blank"}

    def _save(self) -> None:
        pki.write_atomic(self.dir / "state.json", json.dumps(self.state, sort_keys=True).encode())

    # -- the wire ---------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        """Bytes from the line -> frames to send back (one answer per request or damaged frame)."""
        out = []
        for item in self._deframer.feed(data):
            if isinstance(item, FrameError):
                self.refused += 1
                out.append(pack({"v": VERSION, "seq": -1, "ok": False,
                                 "error": {"code": "bad_frame", "message": item.message}}))
                continue
            out.append(self.handle(item))
        return out

    def handle(self, body: bytes) -> bytes:
        try:
            msg = unpack(body)
        except ProvisioningError as e:
            self.refused += 1
            return pack({"v": VERSION, "seq": -1, "ok": False, "error": {"code": e.code, "message": e.message}})
        seq = msg["seq"]
        if seq in self._answers:  # a retry: the same answer, not the step again
            return self._answers[seq]
        try:
            result = self._dispatch(msg.get("op"), msg.get("args"))
            answer = pack({"v": VERSION, "seq": seq, "ok": True, "result": result})
        except ProvisioningError as e:
            self.refused += 1
            answer = pack({"v": VERSION, "seq": seq, "ok": False, "error": {"code": e.code, "message": e.message}})
        if self.state["state"] != "locked":  # after the lock nothing is answered from the cache
            self._answers[seq] = answer
        while len(self._answers) > 64:
            self._answers.popitem(last=False)
        return answer

    def _dispatch(self, op: Any, args: Any) -> dict[str, Any]:
        if op not in OPS:
            raise Refusal("unknown_op", f"unknown command {op!r}; known: {', '.join(OPS)}")
        if not isinstance(args, dict):
            raise Refusal("bad_args", "args must be a map")
        if self.state["state"] == "locked" and op not in ("hello", "verify"):  # verify only proves the key
            raise Refusal("locked", "provisioning is closed on this device")
        return getattr(self, f"_op_{op}")(args)

    # -- commands ---------------------------------------------------------------------------------------------

    def _op_hello(self, args: dict) -> dict[str, Any]:
        return {"model": self.model, "hardware_id": self.hardware_id, "firmware": self.firmware,
                "state": self.state["state"], "protocol": VERSION}

    def _op_generate_key(self, args: dict) -> dict[str, Any]:
        name = args.get("device_id")
        if not isinstance(name, str) or not NAME.match(name):
            raise Refusal("bad_args", "device_id: 1 to 64 of A-Z a-z 0-9 . _ -")
        if self.state.get("device_id") not in (None, name):
            raise Refusal("wrong_state", f"this device is already {self.state['device_id']!r}")
        if not self.keys.exists():
            self.keys.generate()
        if self.state["state"] == "blank":
            self.state.update(state="keyed", device_id=name)
            self._save()
        return {"csr": self.keys.csr(name)}

    def _op_install_chain(self, args: dict) -> dict[str, Any]:
        if self.state["state"] == "blank":
            raise Refusal("wrong_state", "no key yet: generate_key first")
        chain = args.get("chain")
        if not isinstance(chain, list) or not chain or not all(isinstance(c, bytes) for c in chain[:4]):
            raise Refusal("bad_args", "chain: a list of PEM certificates, the device's first")
        try:
            leaf = x509.load_pem_x509_certificate(chain[0])
            leaf.verify_directly_issued_by(self.trusted_ca)
        except (ValueError, TypeError) as e:
            raise Refusal("bad_chain", f"certificate not issued by this device's manufacturing CA: {e}") from e
        except Exception as e:  # cryptography's InvalidSignature
            raise Refusal("bad_chain", f"certificate signature does not verify against the CA: {e!r}") from e
        ours = self.keys.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        theirs = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        if ours != theirs:
            raise Refusal("bad_chain", "certificate is for another key")
        names = [a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        if names != [self.state.get("device_id")]:
            raise Refusal("bad_chain", f"certificate names {names!r}, this device is {self.state.get('device_id')!r}")
        pki.write_atomic(self.dir / "device.pem", chain[0])
        pki.write_atomic(self.dir / "ca.pem", self.trusted_ca.public_bytes(serialization.Encoding.PEM))
        if self.state["state"] == "keyed":
            self.state.update(state="certified", serial=format(leaf.serial_number, "x"))
            self._save()
        return {"serial": format(leaf.serial_number, "x")}

    def _op_set_config(self, args: dict) -> dict[str, Any]:
        if self.state["state"] not in ("certified", "configured"):
            raise Refusal("wrong_state", "install the certificate chain first")
        from trust.keys import BatchKey
        from trust.tls import verify_pin_message

        url, pins, root, ota_root, key = (args.get(k) for k in
                                          ("cloud_url", "pins", "fleet_root_public_key", "ota_root", "signing_key"))
        if not isinstance(url, str) or not url.startswith("https://") or len(url) > 256:
            raise Refusal("bad_args", "cloud_url: an https:// URL")
        if args.get("device_id") != self.state.get("device_id"):
            raise Refusal("bad_args", "device_id differs from the one the key was made for")
        try:
            if not isinstance(pins, dict) or not isinstance(root, str) or not isinstance(key, dict):
                raise ValueError("pins and signing_key are maps, fleet_root_public_key a string")
            verify_pin_message(pins, pki.load_root_public(root))
            batch_key = BatchKey.from_json(key)
            if not isinstance(ota_root, bytes) or len(ota_root) > 64 * 1024:
                raise ValueError("ota_root: the TUF root metadata, at most 64 KiB")
            json.loads(ota_root)
        except Exception as e:  # each of these raises its own family; all mean the same to the station
            raise Refusal("bad_args", f"configuration refused: {e}") from e
        pki.write_atomic(self.dir / "pins.json", json.dumps(pins).encode())
        pki.write_atomic(self.dir / "ota_root.json", ota_root)
        pki.write_atomic(self.dir / "keys.json", json.dumps({"keys": [batch_key.to_json()]}).encode(), private=True)
        pki.write_atomic(self.dir / "config.json", json.dumps(
            {"cloud_url": url, "device_id": self.state["device_id"], "fleet_root_public_key": root}).encode())
        if self.state["state"] == "certified":
            self.state["state"] = "configured"
            self._save()
        return {"state": self.state["state"]}

    def _op_verify(self, args: dict) -> dict[str, Any]:
        challenge = args.get("challenge")
        if not isinstance(challenge, bytes) or not 16 <= len(challenge) <= 128:
            raise Refusal("bad_args", "challenge: 16 to 128 bytes")
        if not self.keys.exists():
            raise Refusal("wrong_state", "no key yet")
        return {"signature": self.keys.sign(b"umbra-provisioning-verify:" + challenge)}

    def _op_self_test(self, args: dict) -> dict[str, Any]:
        out = {}
        for name, test in self.self_tests.items():
            try:
                out[name] = {"ok": True, **test()}
            except Exception as e:  # a failing part is a report, not a crash
                out[name] = {"ok": False, "error": str(e)[:200]}
        return out

    def _op_lock(self, args: dict) -> dict[str, Any]:
        if self.state["state"] != "configured":
            raise Refusal("wrong_state", f"cannot lock a device that is {self.state['state']}: finish first")
        self.state["state"] = "locked"
        self._save()
        self._answers.clear()  # nothing recorded before the lock can be replayed for an answer after it
        return {"state": "locked"}

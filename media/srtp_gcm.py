"""SRTP protection with AES-GCM (RFC 7714) through OpenSSL, for the forwarding hot path.

Why: pylibsrtp's wheel carries libsrtp's own AES, ~12 us to protect a 1.2 KB packet on our
2-core VM; OpenSSL's AES-GCM (via `cryptography`, AES-NI) does it in ~5 us, and SRTP is one
of the two per-viewer costs of forwarding (the other is `sendto`). Used only when DTLS
negotiated an AEAD_AES_*_GCM profile (aiortc and Chrome prefer them); AES-CM stays on libsrtp.
Only outbound RTP: aiortc's libsrtp context keeps doing SRTCP (sender reports) and inbound.

Session keys come from the DTLS exporter exactly as aiortc derives its libsrtp policy
(`RTCDtlsTransport._ssl.export_keying_material`, its `SRTP_PROFILES`, `_role`), then the
RFC 3711 key derivation (AES counter mode PRF). tests/test_media_webrtc_units.py checks our
output byte for byte against libsrtp's.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LABEL_ENCRYPTION = 0x00
LABEL_SALT = 0x02
SALT_BYTES = 12


def derive(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 4.3.1 with a key derivation rate of 0: AES-CM keystream from x = salt ^ label."""
    x = bytearray(master_salt.ljust(14, b"\x00"))  # a 96-bit GCM salt is zero-padded (libsrtp)
    x[7] ^= label
    encryptor = Cipher(algorithms.AES(master_key), modes.CTR(bytes(x) + b"\x00\x00")).encryptor()
    return encryptor.update(b"\x00" * length) + encryptor.finalize()


class GcmProtector:
    """Protects the RTP packets of one outbound SRTP session (any number of SSRCs)."""

    def __init__(self, master_key: bytes, master_salt: bytes) -> None:
        self._aead = AESGCM(derive(master_key, master_salt, LABEL_ENCRYPTION, len(master_key)))
        self._salt = int.from_bytes(derive(master_key, master_salt, LABEL_SALT, SALT_BYTES), "big")
        self._rollover: dict[int, tuple[int, int]] = {}  # ssrc -> (highest seq, roll-over count)

    def _roc(self, ssrc: int, seq: int) -> int:
        """The roll-over count of this packet (RFC 3711 3.3.1 index estimation)."""
        state = self._rollover.get(ssrc)
        if state is None:
            self._rollover[ssrc] = (seq, 0)
            return 0
        s_l, roc = state
        v = roc
        if s_l < 0x8000 and seq - s_l > 0x8000:
            v = roc - 1  # a late packet from before the last wrap
        elif s_l >= 0x8000 and s_l - 0x8000 > seq:
            v = roc + 1  # the sequence wrapped
        if v > roc or (v == roc and seq > s_l):
            self._rollover[ssrc] = (seq, v)
        return v & 0xFFFFFFFF

    def protect(self, packet: bytes) -> bytes:
        header_len = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10:  # header extension: 4-byte header + length words
            header_len += 4 + 4 * ((packet[header_len + 2] << 8) | packet[header_len + 3])
        seq = (packet[2] << 8) | packet[3]
        ssrc = int.from_bytes(packet[8:12], "big")
        iv = ((ssrc << 48) | (self._roc(ssrc, seq) << 16) | seq) ^ self._salt
        header = packet[:header_len]
        return header + self._aead.encrypt(iv.to_bytes(12, "big"), packet[header_len:], header)


def gcm_protector_for(dtls: Any) -> GcmProtector | None:
    """A GCM protector with the keys of this aiortc DTLS transport's outbound SRTP, or None
    when the negotiated profile is not AES-GCM (libsrtp then does the work)."""
    from aiortc.rtcdtlstransport import SRTP_PROFILES

    try:
        selected = dtls._ssl.get_selected_srtp_profile()
    except Exception:
        return None
    profile = next((p for p in SRTP_PROFILES if p.openssl_profile == selected), None)
    if profile is None or profile.salt_length != SALT_BYTES:
        return None
    material = dtls._ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    key_and_salt = profile.get_key_and_salt(material, 1 if dtls._role == "server" else 0)
    return GcmProtector(key_and_salt[: profile.key_length], key_and_salt[profile.key_length:])

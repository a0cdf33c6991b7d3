"""The identity vault: reporter identities encrypted with AES-GCM, every reveal audited.

Keys are derived from ``HOTLINE_SECRET_KEY`` with HKDF, one per purpose, so an identity
blob can never be decrypted as a sealed message or the other way round.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.audit import record
from hotline.store.models import ReporterIdentity, new_id

_NONCE = 12


@dataclass(frozen=True)
class Identity:
    """What a named reporter tells us about themselves. Never log an instance."""

    name: str
    phone: str
    id_number: str = ""

    def __repr__(self) -> str:  # keeps identities out of tracebacks and debug output
        return "Identity(<redacted>)"

    __str__ = __repr__


class Sealer:
    """AES-GCM with a purpose-bound key; the associated data binds a blob to its record."""

    def __init__(self, secret_key: bytes, purpose: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"hotline:{purpose}".encode()
        ).derive(secret_key)
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, associated: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, associated.encode())

    def open(self, blob: bytes, associated: str) -> bytes:
        return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], associated.encode())


class IdentityVault:
    def __init__(self, secret_key: bytes) -> None:
        self._sealer = Sealer(secret_key, "reporter-identity")

    def store(self, session: AsyncSession, identity: Identity) -> ReporterIdentity:
        """Add an encrypted identity record to ``session`` (the caller commits)."""
        row = ReporterIdentity(id=new_id())
        payload = json.dumps(
            {"name": identity.name, "phone": identity.phone, "id_number": identity.id_number},
            ensure_ascii=False,
        ).encode()
        row.ciphertext = self._sealer.seal(payload, row.id)
        session.add(row)
        return row

    async def reveal(
        self, session: AsyncSession, identity_id: str, *, actor: str, reason: str
    ) -> Identity:
        """Decrypt an identity. Every call is written to the audit log first."""
        row = await session.get(ReporterIdentity, identity_id)
        if row is None:
            raise KeyError(identity_id)
        record(session, actor, "identity.reveal", "reporter_identity", identity_id, reason=reason)
        await session.flush()
        data = json.loads(self._sealer.open(row.ciphertext, row.id))
        return Identity(data["name"], data["phone"], data.get("id_number", ""))

"""The data key of each data subject: created at its first save, deleted to forget it.

One :class:`~orchestrix_django.models.SubjectKey` row per subject, 32 random
bytes, wrapped by ``ENCRYPTION_MASTER_KEY`` when it is set (see
``docs/personal-data.md``).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrix_django.models import SubjectKey
from orchestrix_django.settings import orchestrix_settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["NONCE_BYTES", "SubjectErasedError", "SubjectKeys", "forget_subject", "parse_master_key"]

#: Bytes of an AES-GCM nonce (96 bits, as NIST recommends) and of a data key.
NONCE_BYTES = 12
_KEY_BYTES = 32


class SubjectErasedError(ValueError):
    """A save carries personal data of a subject that was forgotten."""

    def __init__(self, subject_id: str) -> None:
        self.subject_id = subject_id
        super().__init__(
            f"data subject {subject_id!r} was forgotten (its key is deleted): no new personal "
            "data is stored for it"
        )


def _aesgcm() -> type[AESGCM]:
    """The AES-GCM cipher of ``cryptography``, imported only when encryption is used."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImproperlyConfigured(
            "ORCHESTRIX['ENCRYPT_PERSONAL_DATA'] needs the cryptography package: "
            "pip install 'orchestrix[encryption]'"
        ) from error
    return AESGCM


def parse_master_key(value: object) -> bytes | None:
    """``ENCRYPTION_MASTER_KEY`` as 32 bytes (None when unset); ImproperlyConfigured if invalid."""
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        key = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != _KEY_BYTES:
        raise ImproperlyConfigured(
            "ORCHESTRIX['ENCRYPTION_MASTER_KEY'] must be the base64 text of 32 random bytes "
            '(python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())")'
        )
    return key


def _wrapping_aad(subject_id: str) -> bytes:
    return b"orchestrix subject key\x00" + subject_id.encode()


class SubjectKeys:
    """The data keys of one save or one read, looked up once per subject.

    Never cached beyond that: a forgotten subject must read as erased at once.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self._aes = _aesgcm()
        master = parse_master_key(orchestrix_settings.ENCRYPTION_MASTER_KEY)
        self._master = self._aes(master) if master is not None else None
        self._ciphers: dict[str, AESGCM | None] = {}

    def for_reading(self, subject_id: str) -> AESGCM | None:
        """The cipher of ``subject_id``'s key, or None when it was forgotten (or never had one)."""
        try:
            return self._ciphers[subject_id]
        except KeyError:
            pass
        row = (
            SubjectKey.objects.using(self.using)
            .filter(pk=subject_id)
            .values_list("key", "wrapped")
            .first()
        )
        cipher = None if row is None or row[0] is None else self._unwrap(subject_id, row[0], row[1])
        self._ciphers[subject_id] = cipher
        return cipher

    def prefetch(self, subject_ids: Iterable[str]) -> None:
        """Look the keys of these subjects up in one query (a read of many subjects' events)."""
        missing = {s for s in subject_ids if s not in self._ciphers}
        if not missing:
            return
        rows = SubjectKey.objects.using(self.using).filter(pk__in=missing)
        for subject, key, wrapped in rows.values_list("subject_id", "key", "wrapped"):
            self._ciphers[subject] = None if key is None else self._unwrap(subject, key, wrapped)
        for subject in missing:
            self._ciphers.setdefault(subject, None)  # no key: never had one

    def for_writing(self, subject_ids: Iterable[str]) -> dict[str, AESGCM]:
        """The ciphers of these subjects, creating the keys they don't have yet (one query)."""
        wanted = set(subject_ids)
        missing = [s for s in wanted if self._ciphers.get(s) is None]
        if missing:
            rows = {
                subject: (key, wrapped)
                for subject, key, wrapped in SubjectKey.objects.using(self.using)
                .filter(pk__in=missing)
                .values_list("subject_id", "key", "wrapped")
            }
            for subject in missing:
                row = rows.get(subject)
                if row is None:
                    self._ciphers[subject] = self._create(subject)
                elif row[0] is None:
                    raise SubjectErasedError(subject)
                else:
                    self._ciphers[subject] = self._unwrap(subject, row[0], row[1])
        ciphers: dict[str, AESGCM] = {}
        for subject in wanted:
            cipher = self._ciphers[subject]
            assert cipher is not None
            ciphers[subject] = cipher
        return ciphers

    def _create(self, subject_id: str) -> AESGCM:
        raw = self._aes.generate_key(bit_length=256)
        stored, wrapped = raw, False
        if self._master is not None:
            nonce = os.urandom(NONCE_BYTES)
            stored = nonce + self._master.encrypt(nonce, raw, _wrapping_aad(subject_id))
            wrapped = True
        manager = SubjectKey.objects.using(self.using)
        try:
            # A savepoint: inside the caller's transaction a lost race must not spoil it.
            with transaction.atomic(using=self.using):
                manager.create(subject_id=subject_id, key=stored, wrapped=wrapped)
        except IntegrityError:
            # Another writer created this subject's first key between our look
            # and our insert: both saves must use the same key, theirs.
            row = manager.filter(pk=subject_id).values_list("key", "wrapped").first()
            if row is None:
                raise
            if row[0] is None:
                raise SubjectErasedError(subject_id) from None
            return self._unwrap(subject_id, row[0], row[1])
        return self._aes(raw)

    def _unwrap(self, subject_id: str, stored: bytes | memoryview, wrapped: bool) -> AESGCM:
        key = bytes(stored)
        if wrapped:
            if self._master is None:
                # Not "erased": a missing master key must never look like an erasure.
                raise ImproperlyConfigured(
                    f"the key of data subject {subject_id!r} is wrapped by a master key, "
                    "and ORCHESTRIX['ENCRYPTION_MASTER_KEY'] is not set"
                )
            from cryptography.exceptions import InvalidTag

            try:
                key = self._master.decrypt(
                    key[:NONCE_BYTES], key[NONCE_BYTES:], _wrapping_aad(subject_id)
                )
            except InvalidTag:
                raise ImproperlyConfigured(
                    f"the key of data subject {subject_id!r} does not unwrap with "
                    "ORCHESTRIX['ENCRYPTION_MASTER_KEY']: it is not the master key it was "
                    "stored with"
                ) from None
        if len(key) != _KEY_BYTES:
            raise ImproperlyConfigured(f"the stored key of data subject {subject_id!r} is damaged")
        return self._aes(key)


def forget_subject(subject_id: str, *, using: str | None = None) -> bool:
    """Delete the key of ``subject_id``: its personal data becomes unreadable, for good.

    Returns whether a key was deleted (False: the subject has no key, or was
    forgotten already). Runs in the events' database (``using``, by default
    ``ORCHESTRIX["DATABASE"]``).
    """
    alias = using or str(orchestrix_settings.DATABASE)
    updated = (
        SubjectKey.objects.using(alias)
        .filter(pk=subject_id, deleted_at__isnull=True)
        .update(key=None, deleted_at=timezone.now())
    )
    return updated > 0

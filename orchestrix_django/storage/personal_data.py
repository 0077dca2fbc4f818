"""Personal data encrypted at rest with a key per data subject (crypto-shredding).

The fields an event class declares personal (:mod:`orchestrix_django.storage.personal_fields`)
are encrypted with AES-256-GCM under their subject's key
(:mod:`orchestrix_django.storage.subject_keys`) on save, and decrypted on read;
deleting the key makes them read as placeholders. How to use it, what is
stored and what erasure can't reach: ``docs/personal-data.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from django.core.exceptions import ImproperlyConfigured

from orchestrix.core.common.exceptions import EventDecodeError
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix.core.serialization.json_data import JsonValue
from orchestrix_django.storage.personal_fields import KEEP_DEFAULT, PersonalFields, personal_fields
from orchestrix_django.storage.subject_keys import NONCE_BYTES, SubjectKeys

__all__ = [
    "ENCRYPTED_TAG",
    "PersonalDataCodec",
    "encrypt_events",
    "readable_data",
]

#: The key marking an encrypted value in the stored JSON; its value is the format.
ENCRYPTED_TAG: Final = "__orchestrix_encrypted__"
#: The format of the encrypted values this version writes.
FORMAT: Final = "v1"
#: The length of SubjectKey.subject_id.
_SUBJECT_ID_LENGTH = 255


def _aad(event_id: str, field: str, subject_id: str) -> bytes:
    # Binds a ciphertext to its place: copied into another event or field, or
    # relabelled with another subject, it no longer decrypts.
    return json.dumps([event_id, field, subject_id]).encode()


def _is_encrypted(value: JsonValue) -> bool:
    return type(value) is dict and ENCRYPTED_TAG in value


def _subject_of(cls: type[Event], plan: PersonalFields, data: dict[str, JsonValue]) -> str:
    value = data.get(plan.subject)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(
            f"{cls.__qualname__}.{plan.subject}, the data subject of its personal data, is "
            f"{value!r}: it must be a non-empty id (text or an integer)"
        )
    subject = str(value)
    if len(subject) > _SUBJECT_ID_LENGTH:
        raise ValueError(f"{cls.__qualname__}.{plan.subject} is too long for a subject id")
    return subject


def encrypt_events(
    events: Sequence[Event], encoded: list[EncodedEvent], using: str
) -> list[EncodedEvent]:
    """``encoded`` with the personal fields of ``events`` encrypted (the save path).

    Values stored encrypted already (an import of exported rows) are kept as they are.
    """
    # Per event, the personal fields still in plaintext. Values encrypted
    # already (an import) keep their key: no key is made or looked up for them,
    # so an import without the keys reads as erased instead of failing.
    pending: list[tuple[str, list[str]] | None] = []
    for event, item in zip(events, encoded, strict=True):
        plan = personal_fields(type(event))
        names = (
            [n for n in plan.fields if n in item.data and not _is_encrypted(item.data[n])]
            if plan is not None
            else []
        )
        pending.append(
            (_subject_of(type(event), plan, item.data), names) if plan and names else None
        )
    if not any(pending):
        return encoded
    ciphers = SubjectKeys(using).for_writing(p[0] for p in pending if p is not None)
    result: list[EncodedEvent] = []
    for item, work in zip(encoded, pending, strict=True):
        if work is None:
            result.append(item)
            continue
        subject, names = work
        cipher = ciphers[subject]
        data = dict(item.data)
        for name in names:
            nonce = os.urandom(NONCE_BYTES)
            plain = json.dumps(data[name], separators=(",", ":"), ensure_ascii=False)
            sealed = cipher.encrypt(nonce, plain.encode(), _aad(item.event_id, name, subject))
            data[name] = {
                ENCRYPTED_TAG: FORMAT,
                "key": subject,
                "nonce": base64.b64encode(nonce).decode(),
                "ciphertext": base64.b64encode(sealed).decode(),
            }
        result.append(dataclasses.replace(item, data=data))
    return result


def decrypt_data(
    cls: type[Event],
    event_id: str,
    data: dict[str, JsonValue],
    keys: SubjectKeys,
    *,
    event_type: str,
    stream_id: str | None = None,
    version: int | None = None,
    position: int | None = None,
) -> dict[str, JsonValue]:
    """``data`` with the personal fields decrypted, or their placeholders if the key is gone.

    Values not encrypted (stored before encryption was turned on) pass through.
    """
    plan = personal_fields(cls)
    if plan is None:
        return data
    result: dict[str, JsonValue] | None = None
    for name in plan.fields:
        value = data.get(name)
        if type(value) is not dict or ENCRYPTED_TAG not in value:
            continue  # stored before the encryption was turned on: plaintext
        if result is None:
            result = dict(data)
        try:
            if value[ENCRYPTED_TAG] != FORMAT:
                raise ValueError(f"unknown encryption format {value[ENCRYPTED_TAG]!r}")
            subject = value["key"]
            if type(subject) is not str:
                raise ValueError("the subject id is not text")
            cipher = keys.for_reading(subject)
            if cipher is None:
                placeholder = plan.erased[name]
                if placeholder is KEEP_DEFAULT:
                    del result[name]
                else:
                    result[name] = placeholder
                continue
            nonce = base64.b64decode(value["nonce"], validate=True)
            sealed = base64.b64decode(value["ciphertext"], validate=True)
            plain = cipher.decrypt(nonce, sealed, _aad(event_id, name, subject))
            result[name] = json.loads(plain)
        except ImproperlyConfigured:
            raise
        except Exception as error:
            # A damaged or moved ciphertext (InvalidTag), or a malformed tag:
            # never read as "erased", which would hide the damage.
            raise EventDecodeError(
                f"personal field {name!r} does not decrypt: {type(error).__name__} {error}".strip(),
                event_type=event_type,
                stream_id=stream_id,
                version=version,
                position=position,
            ) from None
    return result if result is not None else data


class PersonalDataCodec(EventCodec):
    """An :class:`EventCodec` that decrypts personal fields before decoding.

    The stores use it while ``ENCRYPT_PERSONAL_DATA`` is on, so every reader
    (loads, projections, the admin, the API, ``orchestrix_verify``) sees the
    original values. :meth:`batch` gives a copy that looks each subject's key
    up once for a whole read.
    """

    def __init__(
        self, registry: EventRegistry, using: str, keys: SubjectKeys | None = None
    ) -> None:
        super().__init__(registry)
        self.using = using
        self._keys = keys

    def batch(self) -> PersonalDataCodec:
        """A codec for one read: keys are looked up once per subject."""
        return PersonalDataCodec(self.registry, self.using, SubjectKeys(self.using))

    def prefetch_keys(self, data: Iterable[object]) -> None:
        """Look up, in one query, the keys of the subjects whose values ``data`` holds.

        ``data`` are stored data objects (or their JSON text, as drivers return
        it); only those holding an encrypted value are looked at. For a read of
        the log, whose events belong to many subjects. (A batch codec only.)
        """
        if self._keys is None:
            return
        subjects: set[str] = set()
        for item in data:
            if type(item) is str:
                if ENCRYPTED_TAG not in item:
                    continue
                try:
                    item = json.loads(item)
                except ValueError:
                    continue  # the row's decoder reports it
            if type(item) is dict:
                for value in item.values():
                    if _is_encrypted(value) and type(value.get("key")) is str:
                        subjects.add(value["key"])
        self._keys.prefetch(subjects)

    def decode_parts(
        self,
        event_id: str,
        event_type: str,
        schema_version: int,
        timestamp: datetime,
        data: dict[str, JsonValue],
        meta: dict[str, JsonValue],
        *,
        stream_id: str | None = None,
        version: int | None = None,
        position: int | None = None,
        cls: type[Event] | None = None,
    ) -> Event:
        """Decrypt the personal fields of ``data``, then decode as :class:`EventCodec` does."""
        if cls is None:
            cls = self.resolve(event_type, schema_version, stream_id=stream_id, version=version)
        if type(data) is dict:
            try:
                plan = personal_fields(cls)
            except TypeError as error:
                raise EventDecodeError(
                    str(error), event_type=event_type, stream_id=stream_id, version=version
                ) from None
            if plan is not None:
                data = decrypt_data(
                    cls,
                    event_id,
                    data,
                    self._keys or SubjectKeys(self.using),
                    event_type=event_type,
                    stream_id=stream_id,
                    version=version,
                    position=position,
                )
        return super().decode_parts(
            event_id,
            event_type,
            schema_version,
            timestamp,
            data,
            meta,
            stream_id=stream_id,
            version=version,
            position=position,
            cls=cls,
        )


def readable_data(
    event: Event, stored: JsonValue, codec: EventCodec
) -> dict[str, JsonValue] | None:
    """``stored`` (an event's stored data) with its personal fields as ``event`` reads them.

    Decrypted, or their placeholders once the subject is forgotten; the other
    fields exactly as stored. None when nothing in ``stored`` is encrypted.
    For display (the admin): ``event`` is the decoded ``stored``.
    """
    plan = personal_fields(type(event))
    if plan is None or type(stored) is not dict:
        return None
    encrypted = [name for name in plan.fields if _is_encrypted(stored.get(name))]
    if not encrypted:
        return None
    again = codec.encode(event).data
    readable = dict(stored)
    for name in encrypted:
        readable[name] = again.get(name)
    return readable

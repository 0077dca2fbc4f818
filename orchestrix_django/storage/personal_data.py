"""Personal data encrypted at rest with a key per data subject (crypto-shredding).

Events are immutable, so personal data in them can't be deleted when its
owner asks to be forgotten (GDPR article 17). Instead, each data subject's
personal fields are encrypted with that subject's own key; deleting the key
makes them unreadable forever, in every copy of the log, while the events
themselves stay: streams still load and projections still replay.

Marking personal data: an event class names its personal fields and the field
that holds the id of the person they belong to::

    @dataclass(frozen=True, kw_only=True)
    class CustomerRegistered(Event):
        personal_data: ClassVar = ("email", "name")  # encrypted at rest
        data_subject: ClassVar = "customer_id"  # whose they are: stays readable

        customer_id: str
        email: str
        name: str = ""
        plan: str = "free"  # not personal: stays readable

and ``ORCHESTRIX["ENCRYPT_PERSONAL_DATA"] = True`` turns the encryption on
(``pip install 'orchestrix[encryption]'``: AES-GCM from ``cryptography``).
The subject's id is the ``data_subject`` field's stored value (text or an
integer); one event holds the personal data of one subject.

At rest, each personal field's value (its JSON, as the codec encodes it) is
encrypted with AES-256-GCM under the subject's data key and stored as::

    {"__orchestrix_encrypted__": "v1", "key": "<subject id>",
     "nonce": "<base64>", "ciphertext": "<base64>"}

bound to its event id, field and subject (the GCM associated data), so a value
can't be moved to another event. The other fields stay readable, for the
admin, SQL and exports. Reads decrypt: the store, projections, the admin and
the API see the original values.

Keys: :class:`~orchestrix_django.models.SubjectKey`, one row per subject with
32 random bytes, created at the subject's first save (race-safe, in the events'
database). ``ENCRYPTION_MASTER_KEY`` (base64 of 32 bytes, from the
environment or a secrets manager, never in the database) wraps them: without
it a copy of the database holds both the ciphertexts and their keys, so a
leaked dump or backup reveals the personal data.

Forgetting: :func:`forget_subject` (or ``manage.py orchestrix_forget_subject
ID --yes``) deletes the subject's key (the row stays as a tombstone, its key
NULL). From then on each personal field of that subject's events reads as a
placeholder: the field's default when it has one, else ``"<erased>"``
(:data:`ERASED`) for a ``str`` field, ``None`` for an optional one. Every
personal field must be one of these three kinds (checked when the class is
first saved or read with the encryption on, and by the system check
``orchestrix.E012``): decoding must not fail after an erasure. Saving new personal data of a
forgotten subject raises :class:`SubjectErasedError`.

What it does not do: the key is gone from the live table, but database
backups (and, until the database reuses the space, its files) still hold it:
expire backups within your erasure deadline, or use the master key and rotate
backups. Exports (``orchestrix_export``) carry the ciphertexts, not the keys:
an import elsewhere reads personal fields as erased unless the
``orchestrix_django.SubjectKey`` rows are copied too (``dumpdata``). Turning
``ENCRYPT_PERSONAL_DATA`` off again leaves encrypted values the codec can't
decode: once on, keep it on.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrix.core.common.exceptions import EventDecodeError
from orchestrix.core.messaging.message import CLOUDEVENT_FIELDS, Event, EventRegistry
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix.core.serialization.json_data import JsonValue
from orchestrix_django.models import SubjectKey
from orchestrix_django.settings import orchestrix_settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCRYPTED_TAG",
    "ERASED",
    "PersonalDataCodec",
    "PersonalFields",
    "SubjectErasedError",
    "SubjectKeys",
    "encrypt_events",
    "forget_subject",
    "personal_fields",
    "readable_data",
]

#: The key marking an encrypted value in the stored JSON; its value is the format.
ENCRYPTED_TAG: Final = "__orchestrix_encrypted__"
#: The format of the encrypted values this version writes.
FORMAT: Final = "v1"
#: What a forgotten subject's ``str`` personal field without a default reads as.
ERASED: Final = "<erased>"
#: A placeholder meaning "leave the field out of the data": the codec then
#: fills in the field's default.
_DEFAULT: Final = object()
#: Bytes of an AES-GCM nonce (96 bits, as NIST recommends) and of a data key.
_NONCE_BYTES = 12
_KEY_BYTES = 32
_ENVELOPE = frozenset(CLOUDEVENT_FIELDS)
#: The length of SubjectKey.subject_id.
_SUBJECT_ID_LENGTH = 255


class SubjectErasedError(ValueError):
    """A save carries personal data of a subject that was forgotten."""

    def __init__(self, subject_id: str) -> None:
        self.subject_id = subject_id
        super().__init__(
            f"data subject {subject_id!r} was forgotten (its key is deleted): no new personal "
            "data is stored for it"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PersonalFields:
    """What an event class declares personal: its ``data_subject`` and fields.

    ``erased`` maps each personal field to what it reads as once its key is
    gone (a JSON value, or ``_DEFAULT`` for the field's default).
    """

    subject: str
    fields: tuple[str, ...]
    erased: dict[str, object]


_plans: dict[type, PersonalFields | None] = {}


def personal_fields(cls: type[Event]) -> PersonalFields | None:
    """The personal fields ``cls`` declares (None when it declares none).

    Raises ``TypeError`` for a declaration that can't work (see the module docs).
    """
    try:
        return _plans[cls]
    except KeyError:
        plan = _plans[cls] = _read_declaration(cls)
        return plan


def _read_declaration(cls: type[Event]) -> PersonalFields | None:
    declared = getattr(cls, "personal_data", ())
    if not declared:
        return None
    where = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(declared, str) or not all(isinstance(name, str) for name in declared):
        raise TypeError(f"{where}.personal_data must be a tuple of field names, not {declared!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for attribute in ("personal_data", "data_subject"):
        if attribute in fields:
            raise TypeError(
                f"{where}.{attribute} is a dataclass field (it has an annotation): declare it "
                f"as a class attribute, {attribute}: ClassVar[...] = ..."
            )
    subject = getattr(cls, "data_subject", None)
    if not isinstance(subject, str) or subject not in fields or subject in _ENVELOPE:
        raise TypeError(
            f"{where} declares personal_data but its data_subject ({subject!r}) is not one "
            "of its fields: name the field holding the id of the person the data belongs to"
        )
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: only defaults then qualify
        hints = {}
    erased: dict[str, object] = {}
    for name in declared:
        field = fields.get(name)
        if field is None or name in _ENVELOPE:
            raise TypeError(f"{where}.personal_data names {name!r}, which is not its own field")
        if name == subject:
            raise TypeError(
                f"{where}.personal_data names its data_subject {name!r}: the subject's id "
                "stays readable (it names the key); store personal ids in another field"
            )
        annotation = hints.get(name)
        if field.default is not dataclasses.MISSING or (
            field.default_factory is not dataclasses.MISSING
        ):
            erased[name] = _DEFAULT
        elif annotation is str:
            erased[name] = ERASED
        elif _optional(annotation):
            erased[name] = None
        else:
            # After an erasure the event must still decode, so the field needs
            # a value that stands for "erased" without a key.
            raise TypeError(
                f"{where}.{name} is personal data of type {annotation!r} without a default: "
                f"give it a default, or make it str (reads {ERASED!r} once erased) or "
                "optional (reads None)"
            )
    return PersonalFields(subject, tuple(declared), erased)


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)


# ---------------------------------------------------------------- keys


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
        cipher = None if row is None or row[0] is None else self._unwrap(subject_id, *row)
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
                    self._ciphers[subject] = self._unwrap(subject, *row)
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
            nonce = os.urandom(_NONCE_BYTES)
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
            return self._unwrap(subject_id, *row)
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
                    key[:_NONCE_BYTES], key[_NONCE_BYTES:], _wrapping_aad(subject_id)
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


# ---------------------------------------------------------------- encryption


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
            nonce = os.urandom(_NONCE_BYTES)
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
                if placeholder is _DEFAULT:
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

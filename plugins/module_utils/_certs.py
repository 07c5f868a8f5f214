# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS certificates for haproxy SNI: loaded from PEM bytes and matched to Ingress hosts by their SANs.

Pure functions: the caller reads the files and passes their bytes in; nothing here touches the disk,
the network or the clock (``now`` is always an argument, timezone-aware).

Host names come from the certificate's subjectAltName dNSName entries only. The subject's commonName is
ignored, as RFC 6125 section 6.4.4 allows and RFC 9525 and current browsers require: a certificate whose
CN names a host but whose SANs do not, does not cover that host, and one without any dNSName SAN is
rejected when loaded.

Names compare as RFC 6125 and the Kubernetes Ingress host rules say: case-insensitively, ignoring one
trailing dot, after converting U-labels to A-labels with Python's IDNA 2003 codec (``encodings.idna``).
A wildcard is only a whole left-most ``*`` label with at least two labels after it, and it stands for
exactly one label. Anything that is not a usable DNS name never matches.

``cryptography`` is needed to load certificates only; the name matching and selection work without it.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
except ImportError as _exc:  # checked in load_certificate, so that matching works without it
    _CRYPTOGRAPHY_IMPORT_ERROR: ImportError | None = _exc
    HAS_CRYPTOGRAPHY = False
else:
    _CRYPTOGRAPHY_IMPORT_ERROR = None
    HAS_CRYPTOGRAPHY = True

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# module_utils may run on targets older than Python 3.11: no datetime.UTC there.
UTC = datetime.timezone.utc

NO_CERTIFICATE = "no certificate covers this host"

# IDNA 2003 (RFC 3490 section 3.1) separates labels with these full stops as well as ".".
_DOTS = re.compile("[.\u3002\uff0e\uff61]")
# What a label may be once converted to an A-label: LDH (no hyphen first or last), plus the underscore
# that private CAs still issue. Anything else (spaces, control characters, "*" inside a label) never matches.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_MAX_NAME = 253
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----")


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message starts with its source and says why."""


@dataclass(frozen=True)
class Certificate:
    """A leaf certificate with its chain and private key, checked to belong together.

    ``names`` are the subjectAltName dNSName entries, lowercased, as A-labels, without a trailing dot
    (the commonName is not used). ``pem`` is what haproxy loads for it: the leaf, the chain certificates
    in the order given, then the unencrypted private key (PKCS#8); it is left out of ``repr``.
    """

    source: str
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str
    subject: str
    pem: bytes = field(repr=False)


@dataclass(frozen=True)
class HostCertificate:
    """The certificate chosen for one host, or (``certificate`` None) the ``problem`` why there is none."""

    host: str
    certificate: Certificate | None
    problem: str | None


def _alabel(label: str) -> str | None:
    """``label`` as a lowercase A-label, or None when it is empty, unconvertible or not a DNS label."""
    if not label:
        return None
    try:
        converted = label.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return converted if _LABEL.fullmatch(converted) else None


def _labels(name: object) -> tuple[str, ...] | None:
    """The A-labels of ``name``, or None when it is not a usable DNS name.

    A left-most label that is exactly ``*`` is kept as ``*`` (a wildcard pattern or Ingress wildcard host);
    a ``*`` anywhere else, or as part of a label, makes the name unusable.
    """
    if not isinstance(name, str):
        return None
    return _labels_of(name)


@functools.lru_cache(maxsize=65536)
def _labels_of(name: str) -> tuple[str, ...] | None:
    """``_labels`` of a string, remembered: every run compares every host with every certificate name (IDNA
    conversion was 90% of a run of the agent at 3,000 hosts and 12 certificates)."""
    raw = _DOTS.split(name)
    if len(raw) > 1 and not raw[-1]:
        raw.pop()  # one trailing dot: the name written as absolute
    labels: list[str] = []
    for index, label in enumerate(raw):
        converted = "*" if index == 0 and label == "*" else _alabel(label)
        if converted is None:
            return None
        labels.append(converted)
    if len(".".join(labels)) > _MAX_NAME:
        return None
    return tuple(labels)


def normalize_name(name: str) -> str | None:
    """``name`` as it is compared: lowercase A-labels, no trailing dot; None when it is not a usable DNS name."""
    labels = _labels(name)
    return None if labels is None else ".".join(labels)


def name_matches(pattern: str, host: str) -> bool:
    """Whether a certificate name ``pattern`` covers ``host`` (RFC 6125 section 6.4, Kubernetes Ingress hosts).

    Case-insensitive, one trailing dot ignored, U-labels converted to A-labels on both sides. Exact names
    match when equal. A wildcard pattern is ``*`` as the whole left-most label followed by at least two
    labels, and it matches exactly one label: ``*.example.org`` covers ``a.example.org`` but neither
    ``a.b.example.org`` nor ``example.org``. Partial-label wildcards (``f*.example.org``, ``xn--*.example.org``)
    never match. An Ingress wildcard host (``*.example.org``) is covered only by the same wildcard pattern.
    """
    wanted = _labels(pattern)
    have = _labels(host)
    if wanted is None or have is None:
        return False
    if wanted[0] == "*":
        # The one label the wildcard stands for may itself be "*": the identical Ingress wildcard host.
        return len(wanted) >= 3 and len(have) == len(wanted) and have[1:] == wanted[1:]
    return have == wanted


def covers(cert: Certificate, host: str) -> bool:
    """Whether one of ``cert``'s SAN dNSNames covers ``host`` (see ``name_matches``)."""
    return any(name_matches(name, host) for name in cert.names)


def _check_aware(now: datetime.datetime) -> None:
    if not isinstance(now, datetime.datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, not {now!r}")


def valid_at(cert: Certificate, now: datetime.datetime) -> bool:
    """Whether ``now`` (timezone-aware) lies in ``cert``'s validity period, both ends included (RFC 5280)."""
    _check_aware(now)
    return cert.not_before <= now <= cert.not_after


def _newest_first_key(cert: Certificate) -> tuple[datetime.datetime, datetime.datetime, str]:
    return (cert.not_before, cert.not_after, cert.fingerprint)


def _day(when: datetime.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def _moment(when: datetime.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _why_none(covering: Sequence[Certificate], now: datetime.datetime) -> str:
    """The problem for a host only the (none of them valid) ``covering`` certificates cover."""
    if not covering:
        return NO_CERTIFICATE
    expired = [cert for cert in covering if cert.not_after < now]
    early = [cert for cert in covering if cert.not_before > now]
    details = [f"{cert.source} (expired {_day(cert.not_after)})" for cert in expired]
    details += [f"{cert.source} (valid from {_moment(cert.not_before)})" for cert in early]
    if expired and early:
        kind = "expired or not-yet-valid"
    elif expired:
        kind = "expired"
    else:
        kind = "not-yet-valid"
    return f"only {kind} certificates cover this host: {', '.join(details)}"


def select_certificates(
    hosts: Iterable[str], certs: Sequence[Certificate], now: datetime.datetime
) -> dict[str, HostCertificate]:
    """The certificate for each host, keyed by the host as given.

    Among the certificates valid at ``now`` that cover a host the newest wins: latest ``not_before``, then
    latest ``not_after``, then the highest fingerprint, so the choice does not depend on the order of
    ``certs``. An exact name does not beat a newer wildcard. Expired and not-yet-valid certificates are never
    chosen; a host left without one gets a ``problem`` naming them, or ``NO_CERTIFICATE``.
    """
    _check_aware(now)
    chosen: dict[str, HostCertificate] = {}
    for host in hosts:
        if host in chosen:
            continue
        covering = [cert for cert in certs if covers(cert, host)]
        usable = [cert for cert in covering if valid_at(cert, now)]
        if usable:
            chosen[host] = HostCertificate(host, max(usable, key=_newest_first_key), None)
        else:
            chosen[host] = HostCertificate(host, None, _why_none(covering, now))
    return chosen


def expiring(certs: Iterable[Certificate], now: datetime.datetime, days: float) -> list[Certificate]:
    """The certificates valid at ``now`` whose ``not_after`` is at most ``days`` days away, soonest first."""
    _check_aware(now)
    if days < 0:
        raise ValueError(f"days must not be negative, not {days!r}")
    horizon = now + datetime.timedelta(days=days)
    found = [cert for cert in certs if valid_at(cert, now) and cert.not_after <= horizon]
    return sorted(found, key=lambda cert: (cert.not_after, cert.source, cert.fingerprint))


# --- loading (needs cryptography) --------------------------------------------------------------------------


def _pem_blocks(data: bytes, source: str, what: str) -> list[tuple[str, bytes]]:
    """The (label, block) PEM blocks in ``data``; text between them (openssl's "Bag Attributes") is skipped."""
    blocks = [(match.group(1).decode("ascii"), match.group(0)) for match in _PEM_BLOCK.finditer(data)]
    if len(_PEM_BEGIN.findall(data)) != len(blocks):
        raise CertificateError(f"{source}: {what} holds a PEM block without its END line (truncated or malformed)")
    return blocks


def _validity(cert: Any) -> tuple[datetime.datetime, datetime.datetime]:
    """``cert``'s validity period as timezone-aware UTC datetimes (the *_utc attributes came in cryptography 42)."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    return cert.not_valid_before.replace(tzinfo=UTC), cert.not_valid_after.replace(tzinfo=UTC)


def _load_certs(blocks: list[tuple[str, bytes]], source: str) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for label, block in blocks:
        if label != "CERTIFICATE":
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CertificateError(f"{source}: certificate {len(certs) + 1} cannot be parsed: {exc}") from None
    if not certs:
        found = sorted({block[0] for block in blocks})
        detail = f" (found only: {', '.join(found)})" if found else " (not PEM)"
        raise CertificateError(f"{source}: no certificate{detail}")
    return certs


def _load_keys(blocks: list[tuple[str, bytes]], source: str) -> list[PrivateKeyTypes]:
    keys: list[PrivateKeyTypes] = []
    for label, block in blocks:
        if not label.endswith("PRIVATE KEY"):
            continue
        if label == "ENCRYPTED PRIVATE KEY":
            raise CertificateError(f"{source}: the private key is encrypted; haproxy needs it unencrypted")
        try:
            keys.append(serialization.load_pem_private_key(block, password=None))
        except TypeError:  # "Proc-Type: 4,ENCRYPTED" in a traditional key
            raise CertificateError(f"{source}: the private key is encrypted; haproxy needs it unencrypted") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateError(f"{source}: the private key ({label}) cannot be parsed: {exc}") from None
    return keys


def _private_pkcs8(key: PrivateKeyTypes, encoding: serialization.Encoding) -> bytes:
    return key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _only_key(keys: list[PrivateKeyTypes], source: str) -> PrivateKeyTypes:
    """The one private key among ``keys`` (the same key given twice counts once)."""
    distinct: dict[bytes, PrivateKeyTypes] = {}
    for key in keys:
        try:
            distinct.setdefault(_private_pkcs8(key, serialization.Encoding.DER), key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CertificateError(f"{source}: the private key cannot be serialised for haproxy: {exc}") from None
    if not distinct:
        raise CertificateError(f"{source}: no private key (neither after the certificates nor given separately)")
    if len(distinct) > 1:
        raise CertificateError(f"{source}: {len(distinct)} different private keys; give exactly one")
    return next(iter(distinct.values()))


def _dns_names(leaf: x509.Certificate, source: str) -> tuple[str, ...]:
    """The leaf's SAN dNSNames, normalised (kept lowercased as written when not usable DNS names)."""
    values: list[str] = []
    try:
        values = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        pass
    except ValueError as exc:  # duplicate or malformed extensions
        raise CertificateError(f"{source}: the certificate's extensions cannot be parsed: {exc}") from None
    names: dict[str, None] = {}
    for value in values:
        name = normalize_name(value) or value.lower()
        if name:
            names[name] = None
    if not names:
        raise CertificateError(
            f"{source}: the certificate has no subjectAltName dNSName; host names are taken from SANs only, "
            "never from the subject's CN"
        )
    return tuple(names)


def load_certificate(cert_pem: bytes, key_pem: bytes | None, source: str) -> Certificate:
    """Load a certificate for haproxy from PEM bytes, checking that it can be served.

    ``cert_pem`` holds the leaf certificate first, then any intermediates, and may also hold the private key;
    ``key_pem`` (when not None) holds the key instead; only private keys are read from it. The same key given
    in both is fine, two different keys are not. Other PEM blocks (EC or DH parameters) are left out.

    Raises CertificateError, its message starting with ``source``, when the data is not PEM or does not parse,
    there is no private key, the key is encrypted or does not belong to the leaf, or the leaf has no
    subjectAltName dNSName. Raises ImportError when ``cryptography`` is not installed.
    """
    if _CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise ImportError(
            "the Python library 'cryptography' is needed to load TLS certificates; install it where this runs"
        ) from _CRYPTOGRAPHY_IMPORT_ERROR
    blocks = _pem_blocks(bytes(cert_pem), source, "the certificate PEM")
    certs = _load_certs(blocks, source)
    keys = _load_keys(blocks, source)
    if key_pem is not None:
        keys += _load_keys(_pem_blocks(bytes(key_pem), source, "the key PEM"), source)
    key = _only_key(keys, source)
    leaf = certs[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        matches = leaf.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{source}: the certificate's public key cannot be read: {exc}") from None
    if not matches:
        raise CertificateError(f"{source}: the private key does not match the certificate's public key")
    names = _dns_names(leaf, source)
    not_before, not_after = _validity(leaf)
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
    pem += _private_pkcs8(key, serialization.Encoding.PEM)
    return Certificate(
        source=source,
        names=names,
        not_before=not_before,
        not_after=not_after,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        subject=leaf.subject.rfc4514_string(),
        pem=pem,
    )

"""Tests for _certs: name matching tables, then real certificates made at test time by a small CA."""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import ipaddress
import itertools
import re
import sys
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.k8router.edge.plugins.module_utils import _certs
from ansible_collections.k8router.edge.plugins.module_utils._certs import (
    NO_CERTIFICATE,
    Certificate,
    CertificateError,
    HostCertificate,
    covers,
    expiring,
    load_certificate,
    name_matches,
    normalize_name,
    select_certificates,
    valid_at,
)

UTC = datetime.timezone.utc  # noqa: UP017 - the unit tests may also run on Python 3.9 targets
NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
SECOND = datetime.timedelta(seconds=1)
HOST = "www.example.org"
LONG_LABEL = "x" * 63

# --- name matching -------------------------------------------------------------------------------------------

# (pattern from a certificate SAN, host from an Ingress, matches?)
MATCHES: list[tuple[str, str, bool]] = [
    # exact names
    ("example.org", "example.org", True),
    ("www.example.org", "www.example.org", True),
    ("a.b.c.d.example.org", "a.b.c.d.example.org", True),
    ("localhost", "localhost", True),
    ("123.example.org", "123.example.org", True),
    ("a-b.example.org", "a-b.example.org", True),
    ("www_1.example.org", "www_1.example.org", True),
    ("www.example.org", "example.org", False),
    ("example.org", "www.example.org", False),
    ("www.example.org", "www.example.com", False),
    ("www.example.org", "ww.example.org", False),
    ("www.example.org", "wwww.example.org", False),
    ("www.example.org", "www.example.org.evil.test", False),
    ("www.example.org", "evilwww.example.org", False),
    ("example.org", "xexample.org", False),
    ("www.example.org", "www-example.org", False),
    # case
    ("WWW.EXAMPLE.ORG", "www.example.org", True),
    ("www.example.org", "WWW.Example.Org", True),
    ("*.EXAMPLE.org", "Api.example.ORG", True),
    ("Xn--Bcher-Kva.example", "bücher.example", True),
    ("www.example.org", "WWW.EXAMPLE.COM", False),
    # trailing dots
    ("www.example.org.", "www.example.org", True),
    ("www.example.org", "www.example.org.", True),
    ("www.example.org.", "www.example.org.", True),
    ("*.example.org.", "a.example.org", True),
    ("*.example.org", "a.example.org.", True),
    ("www.example.org..", "www.example.org", False),
    ("www.example.org", "www.example.org..", False),
    (".www.example.org", "www.example.org", False),
    ("www..example.org", "www..example.org", False),
    (".", ".", False),
    # IDNA: U-labels become A-labels on either side
    ("bücher.example", "xn--bcher-kva.example", True),
    ("xn--bcher-kva.example", "bücher.example", True),
    ("BÜCHER.example", "xn--bcher-kva.example", True),
    ("bücher.example", "BÜCHER.EXAMPLE", True),
    ("bücher.example", "bücher.example", True),
    ("*.bücher.example", "shop.xn--bcher-kva.example", True),
    ("*.xn--bcher-kva.example", "shop.bücher.example", True),
    ("*.example.org", "bücher.example.org", True),
    ("*.example.org", "xn--bcher-kva.example.org", True),
    ("bücher.example", "bucher.example", False),
    ("münchen.de", "muenchen.de", False),
    ("xn--bcher-kva.example", "xn--bcher-kvb.example", False),
    # Python's codec is IDNA 2003: nameprep maps "ß" to "ss" (IDNA 2008 would keep it, xn--strae-oqa)
    ("strasse.de", "straße.de", True),
    ("xn--strae-oqa.de", "straße.de", False),
    # a U-label that carries the ACE prefix cannot be converted: never matches, even itself
    ("xn--bücher.example", "xn--bücher.example", False),
    # IDNA 2003 full stops and full-width letters
    ("www.example.org", "www\u3002example\u3002org", True),
    ("www.example.org", "www\uff0eexample\uff61org", True),
    ("abc.example", "\uff41\uff42\uff43.example", True),
    # label and name lengths: 63 octets per label, 253 per name
    (f"{LONG_LABEL}.example.org", f"{LONG_LABEL}.example.org", True),
    (f"{LONG_LABEL}x.example.org", f"{LONG_LABEL}x.example.org", False),
    (f"*.{LONG_LABEL}.example.org", f"{LONG_LABEL}.{LONG_LABEL}.example.org", True),
    (f"{LONG_LABEL}.{LONG_LABEL}.{LONG_LABEL}.{'y' * 61}", f"{LONG_LABEL}.{LONG_LABEL}.{LONG_LABEL}.{'y' * 61}", True),
    (f"{LONG_LABEL}.{LONG_LABEL}.{LONG_LABEL}.{'y' * 62}", f"{LONG_LABEL}.{LONG_LABEL}.{LONG_LABEL}.{'y' * 62}", False),
    ("ü" * 70 + ".example", "ü" * 70 + ".example", False),
    ("ü" * 40 + ".example", "ü" * 40 + ".example", True),
    # not DNS names at all: never match, even themselves
    ("exa mple.org", "exa mple.org", False),
    ("www.example.org\n", "www.example.org\n", False),
    ("www.example.org", "www.example.org ", False),
    (" www.example.org", "www.example.org", False),
    ("-www.example.org", "-www.example.org", False),
    ("www-.example.org", "www-.example.org", False),
    ("www.exam/ple.org", "www.exam/ple.org", False),
    ("10.0.0.1", "10.0.0.2", False),
    # wildcards: the whole left-most label, exactly one label
    ("*.example.org", "a.example.org", True),
    ("*.example.org", "www.example.org", True),
    ("*.example.org", "a-b.example.org", True),
    ("*.example.org", "WWW.EXAMPLE.ORG", True),
    ("*.example.org", f"{LONG_LABEL}.example.org", True),
    ("*.a.example.org", "x.a.example.org", True),
    ("*.example.org", "a.b.example.org", False),
    ("*.example.org", "example.org", False),
    ("*.example.org", ".example.org", False),
    ("*.example.org", "a.example.com", False),
    ("*.example.org", "a.example.org.evil.test", False),
    ("*.example.org", "aexample.org", False),
    ("*.example.org", "a..example.org", False),
    ("*.a.example.org", "x.b.example.org", False),
    ("*.a.example.org", "a.example.org", False),
    # a wildcard needs two labels after it (no public suffix list: *.co.uk is allowed)
    ("*.co.uk", "example.co.uk", True),
    ("*.org", "example.org", False),
    ("*.org", "org", False),
    ("*", "example", False),
    ("*", "*", False),
    ("*.", "example.", False),
    # partial-label and misplaced wildcards never match
    ("f*.example.org", "foo.example.org", False),
    ("f*.example.org", "f.example.org", False),
    ("*a.example.org", "ba.example.org", False),
    ("*a.example.org", "a.example.org", False),
    ("w*w.example.org", "www.example.org", False),
    ("xn--*.example.org", "xn--bcher-kva.example.org", False),
    ("**.example.org", "a.example.org", False),
    ("*.*.example.org", "a.b.example.org", False),
    ("a.*.example.org", "a.b.example.org", False),
    ("www.*.org", "www.example.org", False),
    ("*.example.*", "a.example.org", False),
    ("f*.example.org", "f*.example.org", False),
    ("\uff0a.example.org", "a.example.org", False),
    ("*.example.org", "\uff0a.example.org", False),
    # Ingress wildcard hosts are covered only by the identical wildcard
    ("*.example.org", "*.example.org", True),
    ("*.Example.ORG.", "*.example.org", True),
    ("*.bücher.example", "*.xn--bcher-kva.example", True),
    ("a.example.org", "*.example.org", False),
    ("example.org", "*.example.org", False),
    ("*.example.org", "*.a.example.org", False),
    ("*.a.example.org", "*.example.org", False),
    ("*.example.com", "*.example.org", False),
    ("*.org", "*.org", False),
    ("*.example.org", "a.*.example.org", False),
    ("*.example.org", "f*.example.org", False),
    # empty strings
    ("", "", False),
    ("", "example.org", False),
    ("example.org", "", False),
    ("*.example.org", "", False),
    ("", "*", False),
    (".", "", False),
]


@pytest.mark.parametrize(("pattern", "host", "expected"), MATCHES, ids=[f"{case[0]!r}~{case[1]!r}" for case in MATCHES])
def test_name_matches(pattern: str, host: str, expected: bool) -> None:
    assert name_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("first", "second"),
    [pytest.param(p, h, id=f"{p!r}~{h!r}") for p, h, ok in MATCHES if ok and "*" not in p + h],
)
def test_exact_matches_are_symmetric(first: str, second: str) -> None:
    assert name_matches(second, first)


@pytest.mark.parametrize(("pattern", "host"), [(None, HOST), (HOST, None), (b"www.example.org", HOST), (1, "1")])
def test_name_matches_rejects_non_strings(pattern: object, host: object) -> None:
    assert name_matches(pattern, host) is False  # type: ignore[arg-type]


@given(st.text(max_size=80), st.text(max_size=80))
def test_name_matches_never_raises(pattern: str, host: str) -> None:
    assert isinstance(name_matches(pattern, host), bool)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("WWW.Example.ORG.", "www.example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("*.Bücher.example", "*.xn--bcher-kva.example"),
        ("www\u3002example\u3002org", "www.example.org"),
        ("*.org", "*.org"),
        ("f*.example.org", None),
        ("a..b", None),
        ("", None),
        (".", None),
        ("exa mple.org", None),
    ],
)
def test_normalize_name(name: str, expected: str | None) -> None:
    assert normalize_name(name) == expected


# --- a small CA, made once per session -----------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes


def key_pem(key: CertificateIssuerPrivateKeyTypes, fmt: serialization.PrivateFormat | None = None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt or serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_labels(data: bytes) -> list[str]:
    return [label.decode() for label in re.findall(rb"-----BEGIN ([A-Z ]+)-----", data)]


class Pki:
    """A root and an intermediate CA (EC P-256) issuing leaves; RSA keys are slow, so at most two are made."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root = self._name("k8router test root")
        self.root = self._issue(root, self.root_key.public_key(), root, self.root_key, ca=True)
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._issue(
            self._name("k8router test intermediate"), self.intermediate_key.public_key(), root, self.root_key, ca=True
        )
        self._rsa: list[rsa.RSAPrivateKey] = []

    @staticmethod
    def _name(cn: str | None) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])

    @staticmethod
    def _issue(
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
        extensions: Sequence[x509.ExtensionType] = (),
        not_before: datetime.datetime = NOW - 365 * DAY,
        not_after: datetime.datetime = NOW + 365 * DAY,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signer, hashes.SHA256())

    def key(self, kind: str = "ec", slot: int = 0) -> CertificateIssuerPrivateKeyTypes:
        if kind == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        if kind == "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
        while len(self._rsa) <= slot:
            self._rsa.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return self._rsa[slot]

    def leaf(
        self,
        dns: Sequence[str] = (HOST,),
        *,
        cn: str | None = "k8router test leaf",
        san: Sequence[x509.GeneralName] | None = None,
        not_before: datetime.datetime = NOW - 30 * DAY,
        not_after: datetime.datetime = NOW + 60 * DAY,
        key: CertificateIssuerPrivateKeyTypes | None = None,
    ) -> Leaf:
        key = key or self.key()
        names = list(san) if san is not None else [x509.DNSName(name) for name in dns]
        extensions = [x509.SubjectAlternativeName(names)] if names else []
        cert = self._issue(
            self._name(cn),
            key.public_key(),
            self.intermediate.subject,
            self.intermediate_key,
            ca=False,
            extensions=extensions,
            not_before=not_before,
            not_after=not_after,
        )
        return Leaf(cert, key, cert_pem(cert), key_pem(key), cert_pem(self.intermediate))

    def certificate(
        self,
        source: str,
        dns: Sequence[str] = (HOST,),
        not_before: datetime.datetime = NOW - 30 * DAY,
        not_after: datetime.datetime = NOW + 60 * DAY,
    ) -> Certificate:
        leaf = self.leaf(dns, not_before=not_before, not_after=not_after)
        return load_certificate(leaf.cert_pem + leaf.chain_pem, leaf.key_pem, source)


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


# --- loading -------------------------------------------------------------------------------------------------

KINDS = ["ec", "ed25519", "rsa"]
LAYOUTS = ["separate key", "key after the chain", "key before the certificates", "same key in both"]


def split(leaf: Leaf, layout: str) -> tuple[bytes, bytes | None]:
    chain = leaf.cert_pem + leaf.chain_pem
    if layout == "separate key":
        return chain, leaf.key_pem
    if layout == "key after the chain":
        return chain + leaf.key_pem, None
    if layout == "key before the certificates":
        return leaf.key_pem + chain, None
    return chain + leaf.key_pem, chain + leaf.key_pem


# RSA keys are slow to check on loading: one layout is enough for them.
LOAD_CASES = [(kind, layout) for kind in KINDS for layout in LAYOUTS if kind != "rsa" or layout == "separate key"]


@pytest.mark.parametrize(("kind", "layout"), LOAD_CASES)
def test_load_certificate(pki: Pki, kind: str, layout: str) -> None:
    leaf = pki.leaf(["www.example.org", "*.example.org"], key=pki.key(kind))
    cert = load_certificate(*split(leaf, layout), "tls/www.pem")
    assert cert.source == "tls/www.pem"
    assert cert.names == ("www.example.org", "*.example.org")
    assert cert.fingerprint == hashlib.sha256(leaf.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert cert.subject == "CN=k8router test leaf"
    assert cert.not_before == NOW - 30 * DAY
    assert cert.not_after == NOW + 60 * DAY
    assert cert.not_before.utcoffset() == datetime.timedelta(0)
    # one PEM for haproxy: leaf, chain, then the key
    assert pem_labels(cert.pem) == ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"]
    assert cert.pem.startswith(leaf.cert_pem + leaf.chain_pem)
    reloaded = serialization.load_pem_private_key(cert.pem, password=None)
    assert reloaded.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == leaf.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_load_certificate_output_loads_again(pki: Pki) -> None:
    leaf = pki.leaf()
    cert = load_certificate(leaf.cert_pem + leaf.chain_pem, leaf.key_pem, "a.pem")
    assert load_certificate(cert.pem, None, "a.pem") == cert


def test_load_certificate_without_chain(pki: Pki) -> None:
    leaf = pki.leaf()
    cert = load_certificate(leaf.cert_pem, leaf.key_pem, "a.pem")
    assert pem_labels(cert.pem) == ["CERTIFICATE", "PRIVATE KEY"]


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [("ec", serialization.PrivateFormat.TraditionalOpenSSL), ("rsa", serialization.PrivateFormat.TraditionalOpenSSL)],
    ids=["EC PRIVATE KEY", "RSA PRIVATE KEY"],
)
def test_traditional_keys_become_pkcs8(pki: Pki, kind: str, fmt: serialization.PrivateFormat) -> None:
    leaf = pki.leaf(key=pki.key(kind))
    cert = load_certificate(leaf.cert_pem, key_pem(leaf.key, fmt), "a.pem")
    assert pem_labels(cert.pem) == ["CERTIFICATE", "PRIVATE KEY"]


def test_noise_between_blocks_crlf_and_parameters(pki: Pki) -> None:
    leaf = pki.leaf()
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    data = (
        b"Bag Attributes\n    localKeyID: 01 02\nsubject=/CN=k8router test leaf\n"
        + leaf.cert_pem
        + b"issuer=/CN=k8router test intermediate\n"
        + leaf.chain_pem
        + params
        + leaf.key_pem
    ).replace(b"\n", b"\r\n")
    cert = load_certificate(data, None, "a.pem")
    assert pem_labels(cert.pem) == ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"]
    assert b"\r" not in cert.pem


def test_certificate_repr_leaves_out_the_key(pki: Pki) -> None:
    cert = pki.certificate("a.pem")
    assert "PRIVATE" not in repr(cert)
    assert "a.pem" in repr(cert)


def test_certificate_is_frozen(pki: Pki) -> None:
    cert = pki.certificate("a.pem")
    with pytest.raises(FrozenInstanceError):
        cert.source = "b.pem"  # type: ignore[misc]


# (SAN dNSNames as issued, names as loaded)
NAMES: list[tuple[list[str], tuple[str, ...]]] = [
    (["www.example.org"], ("www.example.org",)),
    (["WWW.Example.ORG"], ("www.example.org",)),
    (["www.example.org."], ("www.example.org",)),
    (["b.example.org", "a.example.org"], ("b.example.org", "a.example.org")),
    (["a.example.org", "A.EXAMPLE.ORG", "a.example.org."], ("a.example.org",)),
    (["*.Example.org"], ("*.example.org",)),
    (["xn--bcher-kva.example"], ("xn--bcher-kva.example",)),
    # not usable as DNS names, kept (lowercased) for messages; they never match
    (["F*.Example.org"], ("f*.example.org",)),
    (["*.org", "a.org"], ("*.org", "a.org")),
]


@pytest.mark.parametrize(("dns", "expected"), NAMES)
def test_names_are_normalised(pki: Pki, dns: list[str], expected: tuple[str, ...]) -> None:
    assert pki.certificate("a.pem", dns).names == expected


# (SANs, subject CN, host, covered?)
COVERS: list[tuple[list[str], str | None, str, bool]] = [
    ([HOST], None, HOST, True),
    ([HOST], "other.example.org", HOST, True),
    # the CN is never used: a CN naming the host does not cover it
    (["other.example.org"], HOST, HOST, False),
    (["other.example.org"], HOST, "other.example.org", True),
    (["*.example.com"], "*.example.org", "a.example.org", False),
    (["a.example.org", "b.example.org", "c.example.org"], None, "b.example.org", True),
    (["a.example.org", "b.example.org", "c.example.org"], None, "d.example.org", False),
    (["WWW.Example.ORG"], None, HOST, True),
    (["www.example.org."], None, HOST, True),
    (["*.example.org"], None, "a.example.org", True),
    (["*.example.org"], None, "example.org", False),
    (["*.example.org"], None, "a.b.example.org", False),
    (["*.example.org", "example.org"], None, "example.org", True),
    (["*.example.org"], None, "*.example.org", True),
    (["a.example.org"], None, "*.example.org", False),
    (["xn--bcher-kva.example"], None, "bücher.example", True),
    (["*.xn--bcher-kva.example"], None, "shop.bücher.example", True),
    (["f*.example.org"], None, "foo.example.org", False),
    (["*.org"], None, "example.org", False),
    ([HOST], None, "", False),
]


@pytest.mark.parametrize(("dns", "cn", "host", "expected"), COVERS)
def test_covers(pki: Pki, dns: list[str], cn: str | None, host: str, expected: bool) -> None:
    leaf = pki.leaf(dns, cn=cn)
    cert = load_certificate(leaf.cert_pem, leaf.key_pem, "a.pem")
    assert covers(cert, host) is expected


# --- load errors: the message names the source ---------------------------------------------------------------

SOURCE = "/etc/k8router/tls/shop.pem"


def load_error(cert_pem: bytes, key: bytes | None) -> str:
    with pytest.raises(CertificateError) as caught:
        load_certificate(cert_pem, key, SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: ")
    assert isinstance(caught.value, ValueError)
    return message


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


GARBAGE: list[tuple[str, bytes, str]] = [
    ("empty", b"", "no certificate (not PEM)"),
    ("text", b"hello, world\n", "no certificate (not PEM)"),
    ("binary", bytes(range(256)), "no certificate (not PEM)"),
    ("bad base64", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "certificate 1 cannot be parsed"),
    ("not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be parsed"),
    ("BEGIN only", b"-----BEGIN CERTIFICATE-----\nMIIB\n", "without its END line"),
    ("mismatched END", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END PRIVATE KEY-----\n", "without its END line"),
    (
        "a request",
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
        "no certificate (found only: CERTIFICATE REQUEST)",
    ),
]


@pytest.mark.parametrize(("data", "message"), [pytest.param(d, m, id=i) for i, d, m in GARBAGE])
def test_garbage_certificate(pki: Pki, data: bytes, message: str) -> None:
    assert message in load_error(data, pki.leaf().key_pem)


def test_der_certificate_is_not_pem(pki: Pki) -> None:
    leaf = pki.leaf()
    assert "no certificate (not PEM)" in load_error(leaf.cert.public_bytes(serialization.Encoding.DER), leaf.key_pem)


def test_truncated_certificate(pki: Pki) -> None:
    leaf = pki.leaf()
    assert "without its END line" in load_error(leaf.cert_pem + truncated(leaf.chain_pem), leaf.key_pem)


def test_key_only(pki: Pki) -> None:
    leaf = pki.leaf()
    assert "no certificate (found only: PRIVATE KEY)" in load_error(leaf.key_pem, None)


def test_second_certificate_unparsable(pki: Pki) -> None:
    leaf = pki.leaf()
    bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert "certificate 2 cannot be parsed" in load_error(leaf.cert_pem + bad, leaf.key_pem)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "no private key"),
        (b"", "no private key"),
        (b"hello", "no private key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "private key (PRIVATE KEY) cannot be parsed",
        ),
        (b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", "(EC PRIVATE KEY) cannot be parsed"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n", "the key PEM holds a PEM block without its END line"),
    ],
    ids=["none", "empty", "text", "garbage pkcs8", "garbage sec1", "truncated"],
)
def test_missing_or_bad_key(pki: Pki, key: bytes | None, message: str) -> None:
    leaf = pki.leaf()
    assert message in load_error(leaf.cert_pem + leaf.chain_pem, key)


def test_certificates_in_the_key_pem_are_not_a_key(pki: Pki) -> None:
    leaf = pki.leaf()
    chain = leaf.cert_pem + leaf.chain_pem
    assert "no private key" in load_error(chain, chain)


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL], ids=["pkcs8", "sec1"]
)
def test_encrypted_key(pki: Pki, fmt: serialization.PrivateFormat) -> None:
    leaf = pki.leaf()
    encrypted = leaf.key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"secret")
    )
    assert "the private key is encrypted; haproxy needs it unencrypted" in load_error(leaf.cert_pem, encrypted)


# (key type of the certificate, key type of the key given)
MISMATCHES = [
    ("ec", "ec"),
    ("ed25519", "ed25519"),
    ("rsa", "rsa"),
    ("ec", "ed25519"),
    ("ed25519", "rsa"),
    ("rsa", "ec"),
]


@pytest.mark.parametrize(("cert_kind", "key_kind"), MISMATCHES)
def test_key_does_not_match(pki: Pki, cert_kind: str, key_kind: str) -> None:
    leaf = pki.leaf(key=pki.key(cert_kind, slot=0))
    other = pki.key(key_kind, slot=1)
    message = load_error(leaf.cert_pem + leaf.chain_pem, key_pem(other))
    assert message == f"{SOURCE}: the private key does not match the certificate's public key"


def test_key_of_the_intermediate_does_not_match(pki: Pki) -> None:
    leaf = pki.leaf()
    assert "does not match" in load_error(leaf.cert_pem + leaf.chain_pem, key_pem(pki.intermediate_key))


def test_leaf_must_come_first(pki: Pki) -> None:
    leaf = pki.leaf()
    assert "does not match" in load_error(leaf.chain_pem + leaf.cert_pem, leaf.key_pem)


def test_two_different_keys(pki: Pki) -> None:
    leaf = pki.leaf()
    other = key_pem(pki.key())
    assert "2 different private keys" in load_error(leaf.cert_pem + leaf.key_pem, other)
    assert "2 different private keys" in load_error(leaf.cert_pem + other + leaf.key_pem, None)


@pytest.mark.parametrize(
    "san",
    [
        None,
        [x509.IPAddress(ipaddress.ip_address("192.0.2.1"))],
        [x509.RFC822Name("hostmaster@example.org")],
        [x509.UniformResourceIdentifier("https://www.example.org/")],
    ],
    ids=["CN only, no SAN", "IP SAN only", "email SAN only", "URI SAN only"],
)
def test_no_dns_name(pki: Pki, san: list[x509.GeneralName] | None) -> None:
    leaf = pki.leaf([], cn=HOST, san=san)
    message = load_error(leaf.cert_pem, leaf.key_pem)
    assert "no subjectAltName dNSName" in message
    assert "CN" in message


def test_without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    spec = importlib.util.spec_from_file_location("_certs_without_cryptography", _certs.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.HAS_CRYPTOGRAPHY is False
    assert module.name_matches("*.example.org", HOST)
    with pytest.raises(ImportError, match="'cryptography' is needed"):
        module.load_certificate(b"", None, SOURCE)


# --- validity ------------------------------------------------------------------------------------------------

NOT_BEFORE = NOW - 10 * DAY
NOT_AFTER = NOW + 10 * DAY


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (NOT_BEFORE - SECOND, False),
        (NOT_BEFORE, True),
        (NOW, True),
        (NOT_AFTER, True),
        (NOT_AFTER + SECOND, False),
        (NOT_AFTER + 365 * DAY, False),
        (NOT_BEFORE.astimezone(datetime.timezone(datetime.timedelta(hours=2))), True),
        ((NOT_BEFORE - SECOND).astimezone(datetime.timezone(datetime.timedelta(hours=-5))), False),
    ],
    ids=["second before", "first second", "middle", "last second", "second after", "year after", "+02:00", "-05:00"],
)
def test_valid_at(pki: Pki, when: datetime.datetime, expected: bool) -> None:
    cert = pki.certificate("a.pem", not_before=NOT_BEFORE, not_after=NOT_AFTER)
    assert valid_at(cert, when) is expected


@pytest.mark.parametrize("call", ["valid_at", "select_certificates", "expiring"])
def test_naive_now_is_refused(pki: Pki, call: str) -> None:
    cert = pki.certificate("a.pem")
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        if call == "valid_at":
            valid_at(cert, naive)
        elif call == "select_certificates":
            select_certificates([HOST], [cert], naive)
        else:
            expiring([cert], naive, 30)


# --- selection -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def generations(pki: Pki) -> list[Certificate]:
    """Three valid certificates for HOST, oldest first."""
    return [
        pki.certificate(f"gen{n}.pem", [HOST], not_before=NOW - (30 - n) * DAY, not_after=NOW + 60 * DAY)
        for n in range(3)
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
def test_newest_wins_whatever_the_order(generations: list[Certificate], order: tuple[int, ...]) -> None:
    chosen = select_certificates([HOST], [generations[i] for i in order], NOW)[HOST]
    assert chosen == HostCertificate(HOST, generations[2], None)


@pytest.mark.parametrize("reverse", [False, True])
def test_same_start_later_end_wins(pki: Pki, reverse: bool) -> None:
    short = pki.certificate("short.pem", not_before=NOW - DAY, not_after=NOW + 30 * DAY)
    long = pki.certificate("long.pem", not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    certs = [long, short] if reverse else [short, long]
    assert select_certificates([HOST], certs, NOW)[HOST].certificate == long


@pytest.mark.parametrize("reverse", [False, True])
def test_full_tie_is_broken_by_fingerprint(pki: Pki, reverse: bool) -> None:
    twins = [pki.certificate(f"twin{n}.pem", not_before=NOW - DAY, not_after=NOW + DAY) for n in range(2)]
    expected = max(twins, key=lambda cert: cert.fingerprint)
    certs = twins[::-1] if reverse else twins
    assert select_certificates([HOST], certs, NOW)[HOST].certificate == expected


@pytest.fixture(scope="session")
def estate(pki: Pki) -> list[Certificate]:
    """Certificates for a small estate of hosts, with expired and not-yet-valid ones among them."""

    def make(source: str, dns: list[str], start: int, end: int) -> Certificate:
        return pki.certificate(source, dns, not_before=NOW + start * DAY, not_after=NOW + end * DAY)

    return [
        make("exact-old.pem", ["shop.example.org"], -200, 100),
        make("wild-new.pem", ["*.example.org"], -10, 80),
        make("api.pem", ["api.example.org"], -5, 85),
        make("expired.pem", ["old.example.net"], -400, -60),
        make("expired-too.pem", ["old.example.net", "mixed.example.net"], -300, -30),
        make("future.pem", ["next.example.net", "mixed.example.net"], 31, 400),
        make("renewed-expired.pem", ["renewed.example.net"], -400, -1),
        make("renewed.pem", ["renewed.example.net"], -2, 88),
        make("too-early.pem", ["renewed.example.net"], 5, 400),
        make("apex.pem", ["example.org"], -50, 50),
        make("idn.pem", ["xn--bcher-kva.example"], -50, 50),
        make("ingress-wild.pem", ["*.apps.example.org"], -50, 50),
    ]


# (host, source of the certificate chosen, or the problem)
SELECT: list[tuple[str, str | None, str | None]] = [
    # the newest covering certificate wins, even a wildcard over an older exact name
    ("shop.example.org", "wild-new.pem", None),
    ("api.example.org", "api.pem", None),
    ("www.example.org", "wild-new.pem", None),
    ("WWW.Example.ORG.", "wild-new.pem", None),
    ("example.org", "apex.pem", None),
    ("bücher.example", "idn.pem", None),
    ("xn--bcher-kva.example", "idn.pem", None),
    ("x.apps.example.org", "ingress-wild.pem", None),
    ("*.apps.example.org", "ingress-wild.pem", None),
    # expired and not-yet-valid certificates are skipped, never chosen
    ("renewed.example.net", "renewed.pem", None),
    ("a.b.example.org", None, NO_CERTIFICATE),
    ("*.example.net", None, NO_CERTIFICATE),
    ("unknown.example.com", None, NO_CERTIFICATE),
    ("", None, NO_CERTIFICATE),
    (
        "old.example.net",
        None,
        "only expired certificates cover this host: expired.pem (expired 2025-12-31), "
        "expired-too.pem (expired 2026-01-30)",
    ),
    (
        "next.example.net",
        None,
        "only not-yet-valid certificates cover this host: future.pem (valid from 2026-04-01 12:00:00 UTC)",
    ),
    (
        "mixed.example.net",
        None,
        "only expired or not-yet-valid certificates cover this host: expired-too.pem (expired 2026-01-30), "
        "future.pem (valid from 2026-04-01 12:00:00 UTC)",
    ),
]


@pytest.mark.parametrize(("host", "source", "problem"), SELECT, ids=[case[0] or "empty" for case in SELECT])
def test_select_certificates(estate: list[Certificate], host: str, source: str | None, problem: str | None) -> None:
    chosen = select_certificates([host], estate, NOW)
    assert list(chosen) == [host]
    result = chosen[host]
    assert result.host == host
    assert (result.certificate.source if result.certificate else None) == source
    assert result.problem == problem


def test_select_keeps_host_order_and_drops_duplicates(estate: list[Certificate]) -> None:
    hosts = ["www.example.org", "old.example.net", "api.example.org", "www.example.org"]
    chosen = select_certificates(iter(hosts), estate, NOW)
    assert list(chosen) == ["www.example.org", "old.example.net", "api.example.org"]


def test_select_nothing(estate: list[Certificate]) -> None:
    assert select_certificates([], estate, NOW) == {}
    assert select_certificates([HOST], [], NOW) == {HOST: HostCertificate(HOST, None, NO_CERTIFICATE)}


def test_cn_alone_never_selects(pki: Pki) -> None:
    leaf = pki.leaf(["other.example.org"], cn=HOST)
    cert = load_certificate(leaf.cert_pem, leaf.key_pem, "cn.pem")
    assert select_certificates([HOST], [cert], NOW)[HOST].problem == NO_CERTIFICATE


@pytest.mark.parametrize(
    ("when", "source"),
    [
        (NOW - 100 * DAY, "exact-old.pem"),  # before the wildcard was issued
        (NOW, "wild-new.pem"),
        (NOW + 90 * DAY, "exact-old.pem"),  # the wildcard has expired, the older one has not
    ],
    ids=["before renewal", "now", "after the newer one expired"],
)
def test_selection_follows_the_clock(estate: list[Certificate], when: datetime.datetime, source: str) -> None:
    chosen = select_certificates(["shop.example.org"], estate, when)["shop.example.org"].certificate
    assert chosen is not None
    assert chosen.source == source


# --- expiring ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lifetimes(pki: Pki) -> dict[str, Certificate]:
    """Certificates ending after the days in their names (relative to NOW), plus an expired and a future one."""
    ends = {"1d": DAY, "10d": 10 * DAY, "30d": 30 * DAY, "30d+1s": 30 * DAY + SECOND, "90d": 90 * DAY}
    certs = {name: pki.certificate(f"{name}.pem", not_after=NOW + end) for name, end in ends.items()}
    certs["expired"] = pki.certificate("expired.pem", not_before=NOW - 90 * DAY, not_after=NOW - DAY)
    certs["future"] = pki.certificate("future.pem", not_before=NOW + DAY, not_after=NOW + 5 * DAY)
    return certs


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0, []),
        (0.5, []),
        (1, ["1d"]),
        (9, ["1d"]),
        (10, ["1d", "10d"]),
        (30, ["1d", "10d", "30d"]),
        (31, ["1d", "10d", "30d", "30d+1s"]),
        (365, ["1d", "10d", "30d", "30d+1s", "90d"]),
    ],
)
def test_expiring(lifetimes: dict[str, Certificate], days: float, expected: list[str]) -> None:
    certs = list(reversed(lifetimes.values()))
    assert expiring(certs, NOW, days) == [lifetimes[name] for name in expected]


def test_expiring_refuses_negative_days(lifetimes: dict[str, Certificate]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        expiring(lifetimes.values(), NOW, -1)

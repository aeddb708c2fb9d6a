"""Checks on TLS material before Mongoose's built-in TLS sees it.

Mongoose 7.23 accepts some malformed input without a word: a CA it cannot
decode is dropped (and the peer then goes unverified), a certificate it
cannot decode is never sent.  So ``tls_init`` decodes PEM and DER here,
raises ``ValueError`` for what Mongoose could not use, and hands Mongoose
canonical PEM: only ``CERTIFICATE`` blocks for ``ca`` and ``cert``, one
private-key block, with the label that matches its structure, for ``key``.
"""

import base64
import re
from typing import List, Tuple

_BEGIN = b"-----BEGIN "
_BLOCK = re.compile(rb"-----BEGIN ([^\r\n-]*)-----(.*?)-----END ([^\r\n-]*)-----", re.S)
_SPACE = b" \t\r\n"

_SEQUENCE, _INTEGER, _OCTETS, _BITS, _OID = 0x30, 0x02, 0x04, 0x03, 0x06
_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
_OID_P256 = bytes.fromhex("2a8648ce3d030107")
_OID_NAMES = {
    bytes.fromhex("2b8104000a"): "secp256k1",
    bytes.fromhex("2b81040022"): "P-384",
    bytes.fromhex("2b81040023"): "P-521",
    bytes.fromhex("2b656e"): "X25519",
    bytes.fromhex("2b6570"): "Ed25519",
    bytes.fromhex("2b6571"): "Ed448",
    bytes.fromhex("2a864886f70d01010a"): "RSASSA-PSS",
    bytes.fromhex("2a8648ce380401"): "DSA",
}
_KEY_LABELS = (b"EC PRIVATE KEY", b"RSA PRIVATE KEY", b"PRIVATE KEY")
_RSA_MIN_BITS, _RSA_MAX_BITS = 2048, 4096  # what Mongoose's RSA code accepts

Tlv = Tuple[int, int, int]  # tag, start of the value, end of the value


def _tlv(der: bytes, pos: int, end: int) -> Tlv:
    """The DER element at ``pos``; ``ValueError`` when it overruns ``end``."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, n = der[pos], der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise ValueError("bad DER length")
        n = int.from_bytes(der[pos:pos + k], "big")
        pos += k
    if pos + n > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + n


def _children(der: bytes, start: int, end: int) -> List[Tlv]:
    out = []
    pos = start
    while pos < end:
        tlv = _tlv(der, pos, end)
        out.append(tlv)
        pos = tlv[2]
    return out


def _sequence(der: bytes) -> List[Tlv]:
    """The elements of the SEQUENCE that ``der`` must consist of, exactly."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE or end != len(der):
        raise ValueError("not a single DER SEQUENCE")
    return _children(der, start, end)


def _pem(label: bytes, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"".join([b"-----BEGIN ", label, b"-----\n", b"\n".join(lines),
                     b"\n-----END ", label, b"-----\n"])


def _blocks(value: bytes, field: str) -> List[Tuple[bytes, bytes]]:
    """``(label, der)`` of every PEM block in ``value``."""
    found = []
    for m in _BLOCK.finditer(value):
        label, body, end_label = m.group(1), m.group(2), m.group(3)
        what = "TlsOpts.%s: PEM block %r" % (field, label.decode("ascii", "replace"))
        if label != end_label:
            raise ValueError("%s ends with a different label" % what)
        if b":" in body:  # RFC 1421 headers: only legacy encrypted keys use them
            raise ValueError("%s has PEM headers (an encrypted key?); "
                             "encrypted keys are not supported" % what)
        try:
            der = base64.b64decode(body.translate(None, _SPACE), validate=True)
        except ValueError:
            raise ValueError("%s is not valid base64" % what) from None
        if not der:
            raise ValueError("%s is empty" % what)
        found.append((label, der))
    if len(found) != value.count(_BEGIN):
        raise ValueError("TlsOpts.%s: a PEM block has no matching END line" % field)
    return found


def _check_der(value: bytes, field: str) -> None:
    """Content without a PEM marker must at least start like DER."""
    if not value.startswith(b"\x30"):
        raise ValueError("TlsOpts.%s is neither PEM (it has no '-----BEGIN' line), nor DER, "
                         "nor the path of an existing file" % field)


def _check_certificate(der: bytes, field: str) -> None:
    try:
        parts = _sequence(der)
    except ValueError as exc:
        raise ValueError("TlsOpts.%s: not an X.509 certificate (%s)" % (field, exc)) from None
    if [t[0] for t in parts] != [_SEQUENCE, _SEQUENCE, _BITS]:
        raise ValueError("TlsOpts.%s: not an X.509 certificate" % field)


def certificates(value: bytes, field: str) -> bytes:
    """``ca`` or ``cert`` as canonical PEM: every certificate, nothing else.

    ``value`` is PEM (other blocks, such as a key in a combined file, are
    skipped) or one DER certificate.  Raises ``ValueError`` when there is
    no well-formed certificate.
    """
    if _BEGIN in value:
        ders = [der for label, der in _blocks(value, field) if label == b"CERTIFICATE"]
        if not ders:
            raise ValueError("TlsOpts.%s has no '-----BEGIN CERTIFICATE-----' block" % field)
    else:
        _check_der(value, field)
        ders = [value]
    for der in ders:
        _check_certificate(der, field)
    return b"".join(_pem(b"CERTIFICATE", der) for der in ders)


def _curve_name(oid: bytes) -> str:
    return _OID_NAMES.get(oid, "OID " + oid.hex())


def _check_rsa(der: bytes, start: int, end: int, builtin: bool) -> None:
    """An RSAPrivateKey (PKCS #1); of a size Mongoose can sign with when ``builtin``."""
    ints = _children(der, start, end)
    if len(ints) < 9 or any(t[0] != _INTEGER for t in ints[:9]):
        raise ValueError("not an RSA private key")
    if not builtin:
        return  # OpenSSL checks the size against its security level
    _, s, e = ints[1]
    modulus = der[s:e].lstrip(b"\0")
    bits = len(modulus) * 8 - (8 - modulus[0].bit_length()) if modulus else 0
    if not _RSA_MIN_BITS <= bits <= _RSA_MAX_BITS:
        raise ValueError("RSA keys of %d to %d bits are supported, this one has %d"
                         % (_RSA_MIN_BITS, _RSA_MAX_BITS, bits))


def _check_sec1(der: bytes, parts: List[Tlv], builtin: bool) -> None:
    """An ECPrivateKey (SEC 1); on P-256 in the layout Mongoose expects when ``builtin``."""
    if not builtin:
        return
    for tag, s, e in parts[2:]:
        if tag == 0xA0:  # [0] parameters: the named curve
            ctag, cs, ce = _tlv(der, s, e)
            if ctag == _OID and der[cs:ce] != _OID_P256:
                raise ValueError("only P-256 EC keys are supported, this one is on %s"
                                 % _curve_name(der[cs:ce]))
    if not der.startswith(b"\x30") or der[1] & 0x80 or der[2:7] != b"\x02\x01\x01\x04\x20":
        raise ValueError("only P-256 EC keys are supported")


def _check_pkcs8(der: bytes, parts: List[Tlv], builtin: bool) -> None:
    """A PrivateKeyInfo (PKCS #8); holding an RSA or a P-256 key when ``builtin``."""
    _, s, e = parts[1]
    alg = _children(der, s, e)
    if not alg or alg[0][0] != _OID:
        raise ValueError("bad PKCS#8 algorithm")
    oid = der[alg[0][1]:alg[0][2]]
    if oid == _OID_RSA:
        _, s, e = parts[2]
        inner = der[s:e]
        _check_rsa(inner, *_tlv(inner, 0, len(inner))[1:], builtin)
    elif not builtin:
        return  # OpenSSL reads every key type it knows
    elif oid == _OID_EC:
        curve = der[alg[1][1]:alg[1][2]] if len(alg) > 1 and alg[1][0] == _OID else b""
        if curve != _OID_P256:
            raise ValueError("only P-256 EC keys are supported, this one is on %s"
                             % _curve_name(curve))
    else:
        raise ValueError("%s keys are not supported (RSA and P-256 EC only)"
                         % _curve_name(oid))


def _key_label(der: bytes, builtin: bool) -> bytes:
    """The PEM label matching the structure of a private key in DER."""
    parts = _sequence(der)
    tags = [t[0] for t in parts]
    if tags[:2] == [_SEQUENCE, _OCTETS]:
        raise ValueError("encrypted private keys are not supported; decrypt it first")
    if tags[:2] == [_INTEGER, _OCTETS]:
        _check_sec1(der, parts, builtin)
        return b"EC PRIVATE KEY"
    if tags[:3] == [_INTEGER, _SEQUENCE, _OCTETS]:
        _check_pkcs8(der, parts, builtin)
        return b"PRIVATE KEY"
    if tags[:1] == [_INTEGER]:
        _check_rsa(der, *_tlv(der, 0, len(der))[1:], builtin)
        return b"RSA PRIVATE KEY"
    raise ValueError("not a private key")


def private_key(value: bytes, builtin: bool) -> bytes:
    """``key`` as one canonical PEM block the TLS backend can parse.

    Accepts SEC 1 ``EC PRIVATE KEY``, PKCS #1 ``RSA PRIVATE KEY`` and
    PKCS #8 ``PRIVATE KEY``, as PEM (other blocks, such as ``EC
    PARAMETERS`` or a certificate, are skipped) or DER.  Raises
    ``ValueError`` for encrypted keys and, when ``builtin`` (Mongoose's
    own stack), for Ed25519, EC curves other than P-256 and RSA outside
    2048..4096 bits.
    """
    if _BEGIN in value:
        blocks = _blocks(value, "key")
        if any(label == b"ENCRYPTED PRIVATE KEY" for label, _ in blocks):
            raise ValueError("TlsOpts.key: encrypted private keys are not supported; "
                             "decrypt it first")
        keys = [(label, der) for label, der in blocks if label in _KEY_LABELS]
        if len(keys) != 1:
            raise ValueError("TlsOpts.key needs exactly one EC PRIVATE KEY, RSA PRIVATE KEY "
                             "or PRIVATE KEY block, found %d" % len(keys))
        label, der = keys[0]
    else:
        _check_der(value, "key")
        label, der = b"", value
    try:
        found = _key_label(der, builtin)
    except ValueError as exc:
        raise ValueError("TlsOpts.key: %s" % exc) from None
    if label and found != label:
        raise ValueError("TlsOpts.key: the %s block holds a %s"
                         % (label.decode(), found.decode()))
    return _pem(found, der)


def server_name(value: bytes) -> bytes:
    """``name``, which C reads up to the first NUL: refuse one inside."""
    if b"\0" in value:
        raise ValueError("TlsOpts.name contains a NUL byte")
    return value

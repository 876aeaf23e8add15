"""Hosts of URLs, read as a browser reads them, for checks that compare where a link goes.

Domain logic (A-labels, the public suffix list, organisational domains) lives in
proxy/message/domains.py; this module finds the host in a URL first: schemes with invisible characters,
IPs in disguise (decimal, hex, octal), IDN hosts.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

from proxy.message import domains
from proxy.message.domains import org_domain, to_alabel

__all__ = ["PLAIN_HOST", "host_of", "idna_host", "ip_host", "known_suffix", "registrable", "scheme_and_host", "scheme_of"]

_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*)\s*:")
# Characters browsers drop from a URL before reading it (WHATWG URL: tab, newline; plus the
# invisible format characters phishers use to break naive matching).
_STRIP = re.compile(r"[\t\r\n\x00\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case ("" for a relative link), read as a browser would: with
    tabs, newlines and invisible characters removed, so `java\\tscript:` is `javascript`."""
    m = _SCHEME.match(_STRIP.sub("", url))
    return m.group(1).lower() if m else ""


def idna_host(host: str) -> str:
    """A host name in lower-case A-label (punycode) form, so that look-alike Unicode domains
    compare as the different domains they are: the A-labels of proxy.message.domains.to_alabel
    (IDNA 2008 with UTS 46 mapping, as browsers and the sender checks read them: faß.de is
    xn--fa-hia.de, not fass.de); a name that is not a valid domain keeps its unconvertible
    labels as they are."""
    host = _STRIP.sub("", host).strip().rstrip(".").lower()
    if host.isascii():
        return host
    return to_alabel(host) or ".".join(to_alabel(label) or label for label in host.split("."))


# The shape of nearly every link in a newsletter: http(s), a plain ASCII host name, maybe a
# port, then a path, query, fragment or nothing. Read directly; anything else (credentials,
# backslashes, invisible characters, IDNs, whitespace) goes the long way.
# The host of such a link (proxy/message/linktable.py reads all of a message's links with it).
PLAIN_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_PLAIN_HTTP = re.compile(rf"(https?)://({PLAIN_HOST})\.?(?::[0-9]{{1,5}})?(?:[/?#]|\Z)", re.I)


def scheme_and_host(url: str) -> tuple[str, str]:
    """(scheme_of(url), host_of(url) for http(s) links or ""): what a link check needs first,
    for the common plain link without parsing it."""
    m = _PLAIN_HTTP.match(url)
    if m is not None:
        return m.group(1).lower(), m.group(2).lower()
    scheme = scheme_of(url)
    return scheme, host_of(url) if scheme in ("http", "https") else ""


@lru_cache(maxsize=4096)
def host_of(url: str) -> str:
    """The host a URL points at (lower case, A-label form, no port, no brackets), or ""."""
    url = _STRIP.sub("", url).strip()
    if url.startswith("//"):
        url = "http:" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # malformed IPv6 literal, bad port
        netloc = url.partition("//")[2].split("/", 1)[0]
        host = netloc.rpartition("@")[2].split(":", 1)[0].strip("[]")
    return idna_host(host)


@lru_cache(maxsize=4096)
def ip_host(host: str) -> str | None:
    """The IP address a host name really is, or None. Besides dotted quads and IPv6 literals,
    browsers accept a 32-bit number in decimal, hex or octal (`http://3232235777/`,
    `http://0xC0A80001/`) and shortened forms (`127.1`): all of these are IPs in disguise."""
    host = host.strip("[]")
    if not host or (":" not in host and not host[-1].isdigit() and host[-1] not in "abcdefABCDEF"):
        return None  # every IP form ends in a digit (or a hex digit); names end in letters
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    parts = host.split(".")
    if not all(re.fullmatch(r"0[xX][0-9a-fA-F]*|[0-9]+", p) for p in parts) or len(parts) > 4:
        return None
    try:
        nums = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if len(p) > 1 and p.startswith("0") else int(p) for p in parts]
    except ValueError:
        return None
    # a.b.c.d, a.b.(16 bits), a.(24 bits), (32 bits): the inet_aton forms.
    value = 0
    for n in nums[:-1]:
        if n > 255:
            return None
        value = value * 256 + n
    last_bits = 8 * (5 - len(nums))
    if nums[-1] >= 1 << last_bits:
        return None
    value = (value << last_bits) | nums[-1]
    return str(ipaddress.IPv4Address(value))


@lru_cache(maxsize=4096)
def registrable(host: str) -> str:
    """The registrable domain ("organisational domain") of a host: example.co.uk for
    www.shop.example.co.uk, bar.github.io for foo.bar.github.io. A host under no known public
    suffix (an IP, `localhost`, an unknown TLD) is its own registrable domain."""
    host = idna_host(host)
    if not host or ip_host(host):
        return host
    return org_domain(host)


def known_suffix(host: str) -> bool:
    """Whether the host ends in a public suffix that the list knows (a real TLD)."""
    return domains.known_suffix(idna_host(host))


def normalise_url(url: str) -> str:
    """A URL as compared against the approved list: scheme and host in lower case, default
    port, query, fragment and trailing slash dropped."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    netloc = host if port in (None, 443 if scheme == "https" else 80) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"

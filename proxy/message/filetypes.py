"""What an attachment really is: by its names, its declared type and its first bytes, and, for
zip (and gzip/tar) archives, the same for every member, in memory and within bounds.

Pure functions of bytes: nothing is written to disk, nothing is executed. Archives are read
through their central directory; a member is decompressed only as far as needed (its first
bytes, or a nested archive up to `ArchiveLimits.inspect_bytes`), and a zip bomb (a huge declared
size, an absurd compression ratio, too many members, or a member that inflates past what it
declares) is itself a finding.
"""

from __future__ import annotations

import io
import re
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

SNIFF_BYTES = 4096
# Bidirectional overrides make "invoice\u202efdp.exe" display as "invoiceexe.pdf".
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_MSI_CLSID = bytes.fromhex("84100c0000000000c000000000000046")
_VBA_NAMES = ("_VBA_PROJECT".encode("utf-16-le"), "VBA".encode("utf-16-le") + b"\x00\x00", "Macros".encode("utf-16-le"))


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on archive inspection, from the policy (`[checks.attachment]`)."""

    max_depth: int = 3
    max_entries: int = 1000
    max_total_bytes: int = 100_000_000
    max_ratio: int = 100
    inspect_bytes: int = 10_000_000
    opaque_dangerous: bool = True


@dataclass(frozen=True, slots=True)
class Rules:
    """What counts as dangerous: extensions (lower case, no dot) and declared MIME types."""

    extensions: frozenset[str]
    types: frozenset[str]
    limits: ArchiveLimits = ArchiveLimits()


def clean_name(name: str) -> str:
    """A file name as Windows would act on it: bidi controls removed, Unicode normalised,
    trailing dots and spaces (which Windows drops) stripped, path parts removed."""
    name = unicodedata.normalize("NFKC", _BIDI.sub("", name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rstrip(". \t\r\n\x00")


def name_problem(name: str, rules: Rules) -> str:
    """Why a file name is dangerous, or ""."""
    if not name:
        return ""
    if _BIDI.search(name):
        return f"file name {name!r} hides its real extension with right-to-left characters"
    clean = clean_name(name).lower()
    parts = clean.split(".")
    if len(parts) < 2:
        return ""
    ext = parts[-1].strip()
    if ext in rules.extensions:
        if len(parts) > 2 and parts[-2].strip() and parts[-2].strip() not in rules.extensions:
            return f"file name {name!r} disguises a .{ext} file as .{parts[-2].strip()} (double extension)"
        return f"file name {name!r} has the dangerous extension .{ext}"
    return ""


def sniff(data: bytes) -> str:
    """The kind of file its first bytes say it is ("" for anything harmless or unknown)."""
    head = data[:SNIFF_BYTES]
    if head[:2] == b"MZ":
        return "a Windows executable (MZ/PE)"
    if head[:4] == b"\x7fELF":
        return "an ELF executable"
    if head[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"):
        return "a Mach-O executable"
    if head[:2] == b"#!":
        return "a script (#!)"
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return "ole2"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"Rar!\x1a\x07":
        return "opaque:RAR"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "opaque:7-Zip"
    if head[:4] == b"MSCF":
        return "opaque:CAB"
    if head[7:14] == b"**ACE**":
        return "opaque:ACE"
    return ""


def ole_problem(data: bytes, what: str) -> str:
    """An OLE2 compound file: an MSI installer, or an Office document with VBA macros."""
    if _MSI_CLSID in data[:SNIFF_BYTES * 64]:
        return f"{what} is a Windows installer (MSI)"
    if any(n in data for n in _VBA_NAMES):
        return f"{what} is an Office document with VBA macros"
    return ""


def inspect(data: bytes, what: str, rules: Rules) -> list[str]:
    """Every reason the bytes `data` (described as `what` in messages) are dangerous. All the
    archive members looked into share one budget of `ArchiveLimits.inspect_bytes` decompressed
    bytes, so a thousand nested archives cannot add up to gigabytes."""
    return _Inspection(rules).inspect(data, what, 0)


def _member(info_name: str, what: str) -> str:
    return f"{what} member {info_name[:100]!r}"


class _Inspection:
    """One attachment's inspection: the rules, and what is left of the decompression budget."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.lim = rules.limits
        self.budget = rules.limits.inspect_bytes

    def opaque(self, problem: str) -> list[str]:
        return [problem] if self.lim.opaque_dangerous else []

    def inspect(self, data: bytes, what: str, depth: int) -> list[str]:
        kind = sniff(data)
        if not kind:
            return []
        if kind == "ole2":
            problem = ole_problem(data, what)
            return [problem] if problem else []
        if kind.startswith("opaque:"):
            return self.opaque(f"{what} is a {kind.partition(':')[2]} archive, which cannot be inspected")
        if kind in ("zip", "gzip") and depth >= self.lim.max_depth:
            return self.opaque(f"{what}: archives nested deeper than {self.lim.max_depth}")
        if kind == "zip":
            return self.zip(data, what, depth)
        if kind == "gzip":
            return self.gzip(data, what, depth)
        return [f"{what} is {kind}"]

    def zip(self, data: bytes, what: str, depth: int) -> list[str]:
        lim = self.lim
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
            return self.opaque(f"{what} is a zip archive that cannot be read")
        if len(infos) > lim.max_entries:
            return [f"{what} has {len(infos)} members (more than {lim.max_entries}): a possible zip bomb"]
        total = sum(i.file_size for i in infos)
        if total > lim.max_total_bytes:
            return [f"{what} unpacks to {total} bytes (more than {lim.max_total_bytes}): a possible zip bomb"]
        problems: list[str] = []
        if any(i.filename.lower().endswith("vbaproject.bin") for i in infos):
            problems.append(f"{what} is an Office document with VBA macros")
        for info in infos:
            if info.is_dir() or info.filename.lower().endswith("vbaproject.bin"):  # reported above
                continue
            if self.budget <= 0:
                problems.extend(self.opaque(f"{what}: more than {lim.inspect_bytes} bytes would have to be unpacked to inspect it all"))
                break
            name = _member(info.filename, what)
            problem = name_problem(info.filename, self.rules)
            if problem:
                problems.append(f"{what}: {problem}")
            elif info.file_size > 1_000_000 and info.file_size > lim.max_ratio * max(info.compress_size, 1):
                problems.append(f"{name} inflates {info.file_size // max(info.compress_size, 1)}-fold: a possible zip bomb")
            elif info.flag_bits & 0x1:
                problems.extend(self.opaque(f"{name} is encrypted and cannot be inspected"))
            else:
                # zipfile never returns more than a member declares, and checks its CRC at the end.
                try:
                    with zf.open(info) as f:
                        problems.extend(self.member(f, name, depth))
                # What zipfile raises on members it cannot read: a corrupt stream (BadZipFile,
                # zlib.error, EOFError, OSError), a compression method it does not implement such
                # as Deflate64 or PPMd (NotImplementedError), a password it was not given
                # (RuntimeError), a malformed header (ValueError). Each is an opaque member.
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, EOFError, OSError, zlib.error):
                    problems.extend(self.opaque(f"{name} cannot be decompressed"))
        return problems

    def member(self, f: BinaryIO, name: str, depth: int) -> list[str]:
        """Sniff an archive member's first bytes; read it whole (within the budget) only when
        it is itself an archive or an OLE2 file, which must be looked into."""
        if self.budget <= 0:
            return self.opaque(f"{name}: more than {self.lim.inspect_bytes} bytes would have to be unpacked to inspect it")
        head = f.read(min(SNIFF_BYTES, self.budget))
        self.budget -= len(head)
        if sniff(head) not in ("zip", "gzip", "ole2"):
            return self.inspect(head, name, depth + 1)
        rest = f.read(self.budget + 1)
        self.budget -= len(rest)
        if self.budget < 0:
            return self.opaque(f"{name} is an archive too large to inspect (more than {self.lim.inspect_bytes} bytes unpacked)")
        return self.inspect(head + rest, name, depth + 1)

    def gzip(self, data: bytes, what: str, depth: int) -> list[str]:
        lim = self.lim
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = d.decompress(data, max(self.budget, 1))
        except zlib.error:
            return self.opaque(f"{what} is a gzip file that cannot be decompressed")
        self.budget -= len(body)
        complete = d.eof or not d.unconsumed_tail
        consumed = len(data) - len(d.unconsumed_tail)
        if not complete and len(body) > lim.max_ratio * max(consumed, 1):
            return [f"{what} inflates more than {lim.max_ratio}-fold: a possible gzip bomb"]
        if len(body) > 262 and body[257:262] == b"ustar":
            return self.tar(body, what, depth, complete)
        return self.inspect(body, f"{what} (decompressed)", depth + 1)

    def tar(self, body: bytes, what: str, depth: int, complete: bool) -> list[str]:
        problems: list[str] = []
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tf:
                for count, member in enumerate(tf):
                    if count >= self.lim.max_entries:
                        return [f"{what} has more than {self.lim.max_entries} members: a possible tar bomb"]
                    if not member.isfile():
                        continue
                    if self.budget <= 0:
                        problems.extend(self.opaque(f"{what}: more than {self.lim.inspect_bytes} bytes would have to be unpacked to inspect it all"))
                        break
                    problem = name_problem(member.name, self.rules)
                    if problem:
                        problems.append(f"{what}: {problem}")
                        continue
                    f = tf.extractfile(member)
                    if f is not None:
                        problems.extend(self.member(f, _member(member.name, what), depth))
        except (tarfile.TarError, EOFError, OSError, ValueError):
            if complete:
                problems.extend(self.opaque(f"{what} is a tar archive that cannot be read"))
        if not complete:
            problems.extend(self.opaque(f"{what} unpacks to more than {self.lim.inspect_bytes} bytes; the rest cannot be inspected"))
        return problems

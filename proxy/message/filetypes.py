"""What an attachment really is: by its names, its declared type and its bytes, and, for zip,
gzip, bzip2 and xz archives (and tar inside them), the same for every member, in memory and
within bounds.

What the bytes are is read from an in-tree table of the markers of the kinds that matter here
(`_MARKERS`, `_TRAILERS`): executables, scripts, shortcuts (LNK), OneNote, compiled help (CHM),
disk images (ISO 9660 and UDF descriptors at byte 32769 and on, VHD whose footer is the last
512 bytes, VHDX, Apple DMG's trailer), installers (MSI, CAB) and archives (zip, gzip, bzip2,
xz, zstd, 7-Zip, RAR, ACE). A table, not a general file-type library such as puremagic: the
question is never "what is this file?" but "is it one of these twenty?", and the table looks at
exactly the few offsets those twenty have (a few slices of bytes, whatever the attachment's
size), where puremagic would match its whole database of hundreds of types and still need our
own list of which of them are dangerous.

Pure functions of bytes: nothing is written to disk, nothing is executed. Archives are read
through their central directory; a member is decompressed only as far as needed (its first
bytes, or a nested archive up to `ArchiveLimits.inspect_bytes`), and a zip bomb (a huge declared
size, an absurd compression ratio, too many members, or a member that inflates past what it
declares) is itself a finding.
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Protocol


class _Decompressor(Protocol):
    """zlib's, bz2's and lzma's decompressor objects, as `_Inspection.stream` uses them."""

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...

SNIFF_BYTES = 4096
# How much of an archive member is read to judge it: past the third ISO 9660 descriptor.
MEMBER_HEAD_BYTES = 36870
# (offset, marker, kind): the first that matches names the kind. "opaque:" kinds are archives
# that cannot be looked into; "archive:" kinds are looked into; the others are dangerous.
_MARKERS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"MZ", "a Windows executable (MZ/PE)"),
    (0, b"\x7fELF", "an ELF executable"),
    (0, b"\xfe\xed\xfa\xce", "a Mach-O executable"),
    (0, b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (0, b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (0, b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (0, b"#!", "a script (#!)"),
    (0, bytes.fromhex("4c0000000114020000000000c000000000000046"), "a Windows shortcut (LNK)"),
    (0, bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3"), "a OneNote section"),
    (0, bytes.fromhex("a1a2a3a4a5a6a7a8a9aaabacadaeafb0"), "a OneNote package"),  # .onepkg is a CAB, see below
    (0, b"ITSF", "a compiled HTML help file (CHM)"),
    (0, b"vhdxfile", "a VHDX disk image"),
    (0, b"conectix", "a VHD disk image"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),
    (0, b"PK\x03\x04", "archive:zip"),
    (0, b"PK\x05\x06", "archive:zip"),
    (0, b"PK\x07\x08", "archive:zip"),
    (0, b"\x1f\x8b", "archive:gzip"),
    (0, b"BZh", "archive:bzip2"),
    (0, b"\xfd7zXZ\x00", "archive:xz"),
    (0, b"\x28\xb5\x2f\xfd", "opaque:zstd"),
    (0, b"Rar!\x1a\x07", "opaque:RAR"),
    (0, b"7z\xbc\xaf\x27\x1c", "opaque:7-Zip"),
    (0, b"MSCF", "opaque:CAB"),
    (7, b"**ACE**", "opaque:ACE"),
    # ISO 9660 and UDF volume descriptors: 2048-byte sectors from byte 32768, the identifier
    # one byte in; the first three cover every image (a UDF image starts with BEA01).
    (32769, b"CD001", "an ISO 9660 disk image"),
    (34817, b"CD001", "an ISO 9660 disk image"),
    (36865, b"CD001", "an ISO 9660 disk image"),
    (32769, b"BEA01", "a UDF disk image"),
    (32769, b"NSR02", "a UDF disk image"),
    (32769, b"NSR03", "a UDF disk image"),
    (34817, b"NSR02", "a UDF disk image"),
    (34817, b"NSR03", "a UDF disk image"),
)
# (offset from the end, marker, kind): a fixed-size VHD is all data and a 512-byte footer (511
# in early versions); an Apple disk image ends in its 512-byte "koly" trailer.
_TRAILERS: tuple[tuple[int, bytes, str], ...] = (
    (512, b"conectix", "a VHD disk image"),
    (511, b"conectix", "a VHD disk image"),
    (512, b"koly", "an Apple disk image (DMG)"),
)
_ARCHIVE_NAMES = {"zip": "a zip archive", "gzip": "a gzip file", "bzip2": "a bzip2 file", "xz": "an xz file",
                  "zstd": "a zstd file", "RAR": "a RAR archive", "7-Zip": "a 7-Zip archive", "CAB": "a CAB archive",
                  "ACE": "an ACE archive", "ole2": "an OLE2 compound file"}
# What a name's extension or a declared type says the part is, and the kinds its bytes may be
# then (None: any, "" for plain data). A part claiming one of these whose bytes are an archive,
# a disk image or an executable is disguised, and reported with both.
_CLAIMED_KINDS: dict[str, frozenset[str]] = {
    "pdf": frozenset({""}), "image": frozenset({""}), "text": frozenset({""}),
    "office-ole": frozenset({"ole2"}), "office-zip": frozenset({"archive:zip"}),
}
_CLAIM_BY_EXTENSION = {
    "pdf": "pdf", "jpg": "image", "jpeg": "image", "png": "image", "gif": "image", "bmp": "image",
    "webp": "image", "tif": "image", "tiff": "image", "heic": "image",
    "txt": "text", "csv": "text", "htm": "text", "html": "text", "xml": "text", "json": "text", "ics": "text",
    "rtf": "text", "doc": "office-ole", "xls": "office-ole", "ppt": "office-ole", "msg": "office-ole",
    "docx": "office-zip", "xlsx": "office-zip", "pptx": "office-zip", "odt": "office-zip", "ods": "office-zip",
    "odp": "office-zip",
}
_CLAIM_BY_TYPE = {
    "application/pdf": "pdf", "text/plain": "text", "text/csv": "text", "text/html": "text", "text/calendar": "text",
    "application/msword": "office-ole", "application/vnd.ms-excel": "office-ole", "application/vnd.ms-powerpoint": "office-ole",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "office-zip",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "office-zip",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "office-zip",
    "application/vnd.oasis.opendocument.text": "office-zip", "application/vnd.oasis.opendocument.spreadsheet": "office-zip",
}
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


def sniff(data: bytes, whole: bool = True) -> str:
    """The kind of file its bytes say it is ("" for anything harmless or unknown): "ole2",
    "archive:<name>" (to be looked into), "opaque:<name>" (an archive that cannot be), or a
    description of a dangerous kind. `whole`: `data` is the whole file, so markers at its end
    count too (not so for the first bytes of an archive member)."""
    for offset, marker, kind in _MARKERS:
        if data.startswith(marker, offset):
            if marker == b"BZh" and not data[3:4].isdigit():
                continue  # "BZh" then the block size digit: anything else is text that starts so
            return kind
    if whole:
        size = len(data)
        for back, marker, kind in _TRAILERS:
            if size >= back and data.startswith(marker, size - back):
                return kind
    return ""


def claim(names: tuple[str, ...] | list[str], content_type: str) -> tuple[str, str]:
    """What a part says it is, by its names or its declared type: (the claim, in whose words:
    "named 'x.pdf'" or "declared application/pdf"), or ("", "") when it claims nothing we know."""
    for name in names:
        ext = clean_name(name).lower().rpartition(".")[2]
        if ext in _CLAIM_BY_EXTENSION:
            return _CLAIM_BY_EXTENSION[ext], f"named {name[:80]!r}"
    found = _CLAIM_BY_TYPE.get(content_type.lower()) or ("image" if content_type.lower().startswith("image/") else "")
    return (found, f"declared {content_type}") if found else ("", "")


def disguise(data: bytes, names: tuple[str, ...] | list[str], content_type: str) -> tuple[str, str] | None:
    """When a part's name or declared type says one thing (a PDF, an image, a document) and its
    bytes are another (an archive, a disk image, a program): (what the bytes are, and what the
    part says, in both its words: ", though named 'x.pdf' (declared application/pdf)");
    otherwise None."""
    kind = sniff(data)
    said, words = claim(names, content_type)
    if not kind or not said or kind in _CLAIMED_KINDS[said]:
        return None
    what = _ARCHIVE_NAMES.get(kind.partition(":")[2] or kind, kind)
    return what, f", though {words}" + (f" (declared {content_type})" if words.startswith("named") else "")


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

    def inspect(self, data: bytes, what: str, depth: int, whole: bool = True) -> list[str]:
        kind = sniff(data, whole)
        if not kind:
            return []
        if kind == "ole2":
            problem = ole_problem(data, what)
            return [problem] if problem else []
        if kind.startswith("opaque:"):
            return self.opaque(f"{what} is {_ARCHIVE_NAMES.get(kind[7:], kind[7:])}, which cannot be inspected")
        if kind.startswith("archive:") and depth >= self.lim.max_depth:
            return self.opaque(f"{what}: archives nested deeper than {self.lim.max_depth}")
        if kind == "archive:zip":
            return self.zip(data, what, depth)
        if kind == "archive:gzip":
            return self.stream(zlib.decompressobj(16 + zlib.MAX_WBITS), zlib.error, "gzip", data, what, depth)
        if kind == "archive:bzip2":
            return self.stream(bz2.BZ2Decompressor(), OSError, "bzip2", data, what, depth)
        if kind == "archive:xz":
            return self.stream(lzma.LZMADecompressor(), lzma.LZMAError, "xz", data, what, depth)
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

    def member(self, f: IO[bytes], name: str, depth: int) -> list[str]:
        """Sniff an archive member's first bytes; read it whole (within the budget) only when
        it is itself an archive or an OLE2 file, which must be looked into."""
        if self.budget <= 0:
            return self.opaque(f"{name}: more than {self.lim.inspect_bytes} bytes would have to be unpacked to inspect it")
        head = f.read(min(MEMBER_HEAD_BYTES, self.budget))
        self.budget -= len(head)
        kind = sniff(head, whole=len(head) < MEMBER_HEAD_BYTES)
        if kind != "ole2" and not kind.startswith("archive:"):
            # Judged by its first bytes, as far as a disk image's descriptors; by its end too
            # when that is the whole member.
            return self.inspect(head, name, depth + 1, whole=len(head) < MEMBER_HEAD_BYTES)
        rest = f.read(self.budget + 1)
        self.budget -= len(rest)
        if self.budget < 0:
            return self.opaque(f"{name} is an archive too large to inspect (more than {self.lim.inspect_bytes} bytes unpacked)")
        return self.inspect(head + rest, name, depth + 1)

    def stream(self, d: _Decompressor, error: type[Exception], name: str, data: bytes, what: str, depth: int) -> list[str]:
        """A gzip, bzip2 or xz file: decompressed within the budget, then judged as what it holds."""
        lim = self.lim
        try:
            body = d.decompress(data, max(self.budget, 1))
        except (error, EOFError, ValueError):
            return self.opaque(f"{what} is {_ARCHIVE_NAMES[name]} that cannot be decompressed")
        self.budget -= len(body)
        tail = getattr(d, "unconsumed_tail", None)  # zlib's; bz2 and lzma say needs_input
        complete = d.eof or (not tail if tail is not None else bool(getattr(d, "needs_input", True)))
        consumed = len(data) - len(tail or b"")
        if not complete and len(body) > lim.max_ratio * max(consumed, 1):
            return [f"{what} inflates more than {lim.max_ratio}-fold: a possible {name} bomb"]
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

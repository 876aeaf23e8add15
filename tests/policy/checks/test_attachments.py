"""attachment.dangerous: by declared type, names (RFC 2231/2047, double extensions), magic
bytes, macro-enabled Office files, and inside zip/gzip/tar archives within bounds."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import random
import tarfile
import zipfile

import pytest

from proxy.message.filetypes import ArchiveLimits, Rules, inspect, name_problem
from tests.policy.checks.judging import FOOTER, found, mail, policy, rules

EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 120 + b"This program cannot be run in DOS mode."
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 100
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100
OLE_MACRO = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500 + "_VBA_PROJECT".encode("utf-16-le") + b"\x00" * 100
OLE_PLAIN = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500 + "WordDocument".encode("utf-16-le") + b"\x00" * 100
MSI = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 80 + bytes.fromhex("84100c0000000000c000000000000046") + b"\x00" * 100


def part(data: bytes, ctype: str = "application/octet-stream", name: str | None = None,
         disposition: str | None = None) -> str:
    disp = disposition if disposition is not None else (f'attachment; filename="{name}"' if name else "attachment")
    ctype_line = f'{ctype}; name="{name}"' if name and disposition is None else ctype
    b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return f"--b\r\nContent-Type: {ctype_line}\r\nContent-Disposition: {disp}\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"


def att(*parts: str, pol=None, facts=None) -> list[str]:
    return [f.detail for f in found(mail(FOOTER, "", extra="".join(parts)), pol, facts=facts, family="attachment")]


def zipped(members: list[tuple[str, bytes]], flags: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    out = buf.getvalue()
    if flags:  # mark every member encrypted, in the local and central headers
        out = bytearray(out)
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = out.find(sig)
            while i >= 0:
                out[i + off] |= flags
                i = out.find(sig, i + 4)
        out = bytes(out)
    return out


@pytest.mark.parametrize("name", [
    "setup.exe", "INVOICE.EXE", "run.bat", "x.cmd", "a.vbs", "a.js", "a.jse", "a.wsf", "a.ps1", "a.hta",
    "a.scr", "a.pif", "a.com", "a.msi", "a.jar", "a.lnk", "a.iso", "a.img", "a.docm", "a.xlsm", "a.pptm",
    "a.one", "a.apk", "a.dmg", "a.sh",
    "invoice.pdf.exe", "invoice.exe.", "invoice.exe   ", "photo.jpg                    .scr",
    "C:\\Users\\x\\setup.exe",
])
def test_dangerous_names(name: str) -> None:
    assert att(part(PDF, name=name)) != []


@pytest.mark.parametrize("name", ["report.pdf", "photo.jpg", "prices.xlsx", "letter.docx", "notes.txt",
                                  "invoice.exe.pdf", "archive.tar.gz", "exe", "readme"])
def test_harmless_names(name: str) -> None:
    assert att(part(PDF, "application/pdf", name=name)) == []


def test_double_extension_is_named() -> None:
    [detail] = [d for d in att(part(PDF, name="invoice.pdf.exe")) if "double extension" in d]
    assert "disguises a .exe file as .pdf" in detail


def test_right_to_left_override() -> None:
    assert any("right-to-left" in d for d in att(part(PDF, name="invoice\u202efdp.exe")))


@pytest.mark.parametrize("disposition", [
    "attachment; filename*=utf-8''factuur%20%E2%82%AC120.pdf.exe",
    "attachment; filename*0*=utf-8''fact; filename*1*=uur.pdf; filename*2=.exe",
    'attachment; filename="=?utf-8?B?ZmFjdHV1ci5leGU=?="',  # RFC 2047 in a parameter, as clients do
])
def test_encoded_names(disposition: str) -> None:
    assert att(part(PDF, disposition=disposition)) != []


def test_script_parts_without_a_name_are_inspected() -> None:
    raw = "--b\r\nContent-Type: text/javascript\r\n\r\nnew ActiveXObject('WScript.Shell')\r\n"
    assert att(raw) == ["attachment #1 (text/javascript) is declared as text/javascript"]
    assert att("--b\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n") == []


def test_content_type_name_counts_too() -> None:
    raw = part(PDF, ctype='application/pdf; name="setup.exe"', disposition='attachment; filename="report.pdf"')
    assert any("setup.exe" in d for d in att(raw))


@pytest.mark.parametrize("ctype", ["application/x-msdownload", "application/x-sh", "application/java-archive",
                                   "application/vnd.ms-excel.sheet.macroEnabled.12", "application/hta"])
def test_declared_types(ctype: str) -> None:
    assert att(part(PDF, ctype, name="file.dat")) == [f"attachment 'file.dat' is declared as {ctype.lower()}"]


@pytest.mark.parametrize("data, what", [
    (EXE, "Windows executable"), (ELF, "ELF executable"), (b"\xcf\xfa\xed\xfe" + b"\x00" * 40, "Mach-O"),
    (b"#!/bin/sh\nrm -rf ~\n", "script"), (OLE_MACRO, "VBA macros"), (MSI, "installer (MSI)"),
    (b"Rar!\x1a\x07\x01\x00" + b"\x00" * 40, "RAR archive"), (b"7z\xbc\xaf\x27\x1c" + b"\x00" * 40, "7-Zip archive"),
])
def test_magic_bytes_whatever_the_name(data: bytes, what: str) -> None:
    [detail] = att(part(data, "image/jpeg", name="holiday.jpg"))
    assert what in detail


@pytest.mark.parametrize("data, ctype, name", [
    (PDF, "application/pdf", "a.pdf"), (JPEG, "image/jpeg", "a.jpg"), (OLE_PLAIN, "application/msword", "a.doc"),
    (zipped([("word/document.xml", b"<w:document/>")]), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "a.docx"),
    (zipped([("a.txt", b"hello"), ("b/c.csv", b"1,2")]), "application/zip", "a.zip"),
    (gzip.compress(b"plain text log\n" * 100), "application/gzip", "log.gz"),
])
def test_harmless_content(data: bytes, ctype: str, name: str) -> None:
    assert att(part(data, ctype, name=name)) == []


def test_macro_enabled_office_by_content() -> None:
    docx = zipped([("[Content_Types].xml", b"<Types/>"), ("xl/vbaProject.bin", OLE_MACRO)])
    assert att(part(docx, name="prices.xlsx")) == ["attachment 'prices.xlsx' is an Office document with VBA macros"]


@pytest.mark.parametrize("members, expect", [
    ([("readme.txt", b"hi"), ("setup.exe", PDF)], "dangerous extension .exe"),
    ([("photo.jpg", EXE)], "member 'photo.jpg' is a Windows executable"),
    ([("inner.zip", zipped([("run.vbs", b"x")]))], "dangerous extension .vbs"),
    ([("inner.zip", zipped([("deeper.zip", zipped([("a.txt", EXE)]))]))], "is a Windows executable"),
    ([("old.doc", OLE_MACRO)], "VBA macros"),
    ([("logs.tgz", gzip.compress(b"x"))], ""),
])
def test_inside_zip(members: list[tuple[str, bytes]], expect: str) -> None:
    out = att(part(zipped(members), "application/zip", name="files.zip"))
    assert (expect in " ".join(out)) if expect else out == []


def test_nesting_depth_is_bounded() -> None:
    data = zipped([("a.txt", b"x")])
    for i in range(5):
        data = zipped([(f"level{i}.zip", data)])
    assert any("nested deeper than 3" in d for d in att(part(data, name="deep.zip")))
    assert att(part(data, name="deep.zip"), pol=policy({"attachment": {"max_archive_depth": 8}})) == []


def test_zip_bomb_by_ratio() -> None:
    bomb = zipped([("zeros.txt", b"\x00" * 20_000_000)])
    assert len(bomb) < 100_000
    [detail] = att(part(bomb, name="big.zip"))
    assert "possible zip bomb" in detail


def test_zip_bomb_by_declared_size_and_entry_count() -> None:
    many = zipped([(f"f{i}.txt", b"x") for i in range(1200)])
    assert "possible zip bomb" in att(part(many, name="many.zip"))[0]
    assert att(part(many, name="many.zip"), pol=policy({"attachment": {"max_archive_entries": 5000}})) == []
    big = zipped([(f"f{i}.bin", b"\x00" * 900_000) for i in range(3)])
    assert "unpacks to 2700000 bytes" in att(part(big, name="big.zip"), pol=policy({"attachment": {"max_archive_bytes": 1_000_000}}))[0]


def test_encrypted_and_broken_archives_are_opaque() -> None:
    enc = zipped([("invoice.pdf", PDF)], flags=0x1)
    assert "is encrypted and cannot be inspected" in att(part(enc, name="invoice.zip"))[0]
    broken = b"PK\x03\x04" + b"\x00" * 50
    assert "cannot be read" in att(part(broken, name="x.zip"))[0]
    allow = policy({"attachment": {"opaque_archives": "allow"}})
    assert att(part(enc, name="invoice.zip"), pol=allow) == []
    assert att(part(b"Rar!\x1a\x07\x00" + b"\x00" * 20, name="x.rar"), pol=allow) == []


def tgz(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_inside_tar_gz() -> None:
    assert "dangerous extension .sh" in att(part(tgz([("a.txt", b"x"), ("install.sh", b"echo")]), name="x.tgz"))[0]
    assert "ELF executable" in att(part(tgz([("bin/tool", ELF)]), name="x.tar.gz"))[0]
    assert att(part(tgz([("a.txt", b"x"), ("b.csv", b"1")]), name="x.tgz")) == []


def test_gzip_bomb() -> None:
    bomb = gzip.compress(b"\x00" * 30_000_000)
    assert "possible gzip bomb" in att(part(bomb, name="x.gz"))[0]


def test_nothing_is_written_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("an archive member was extracted to disk")

    for cls, names in ((zipfile.ZipFile, ("extract", "extractall")), (tarfile.TarFile, ("extract", "extractall"))):
        for name in names:
            monkeypatch.setattr(cls, name, forbidden)
    data = zipped([("inner.zip", zipped([("a.exe", EXE)])), ("x.tgz", tgz([("b.sh", b"x")]))])
    assert len(att(part(data, name="x.zip"))) == 2


def test_findings_are_capped() -> None:
    parts = "".join(part(PDF, name=f"f{i}.exe") for i in range(8))
    out = att(parts)
    assert len(out) == 6 and out[-1].startswith("and 3 more")


def test_extensions_come_from_the_policy() -> None:
    pol = policy({"attachment": {"extensions": ["html"], "types": []}})
    assert att(part(PDF, name="a.exe"), pol=pol) == []
    assert att(part(PDF, name="login.html"), pol=pol) != []


def test_filetypes_directly() -> None:
    rules_ = Rules(frozenset({"exe"}), frozenset(), ArchiveLimits())
    assert name_problem("", rules_) == "" and name_problem("a.EXE", rules_)
    assert inspect(b"", "x", rules_) == [] and inspect(EXE, "x", rules_) == ["x is a Windows executable (MZ/PE)"]


def test_transactional_streams_check_attachments_too() -> None:
    raw = mail(FOOTER, "", extra=part(EXE, name="receipt.pdf"))
    assert rules(raw, stream="transactional", family="attachment") == ["attachment.dangerous"]


def test_nested_archives_share_one_decompression_budget() -> None:
    inner = zipped([("a.bin", random.Random(1).randbytes(200_000))])  # incompressible
    outer = zipped([(f"part{i}.zip", inner) for i in range(20)])  # 20 nested archives of ~200 KB
    pol = policy({"attachment": {"max_inspect_bytes": 1_000_000}})
    out = att(part(outer, name="parts.zip"), pol=pol)
    assert out and all("unpacked" in d for d in out)
    assert att(part(outer, name="parts.zip"), pol=policy({"attachment": {"max_inspect_bytes": 50_000_000}})) == []


ISO = bytes(32769) + b"CD001\x01" + bytes(4000)
VHD_FIXED = bytes(8192) + b"conectix" + bytes(504)


@pytest.mark.parametrize("data, what", [
    (ISO, "an ISO 9660 disk image"),
    (bytes(32769) + b"BEA01" + bytes(4000), "a UDF disk image"),
    (bytes.fromhex("4c0000000114020000000000c000000000000046") + bytes(60), "a Windows shortcut (LNK)"),
    (bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3") + bytes(60), "a OneNote section"),
    (b"ITSF\x03\x00\x00\x00" + bytes(60), "compiled HTML help"),
    (b"vhdxfile" + bytes(60), "a VHDX disk image"),
    (VHD_FIXED, "a VHD disk image"),
    (bytes(4096) + b"koly" + bytes(508), "an Apple disk image"),
    (b"MSCF\x00\x00\x00\x00" + bytes(60), "a CAB archive"),
    (b"\x28\xb5\x2f\xfd" + bytes(60), "a zstd file"),
])
def test_disguised_as_a_pdf_is_reported_with_both(data: bytes, what: str) -> None:
    [detail] = att(part(data, "application/pdf", name="invoice.pdf"))
    assert what in detail
    assert detail.endswith(", though named 'invoice.pdf' (declared application/pdf)"), detail


@pytest.mark.parametrize("packed, name", [(bz2.compress, "bzip2"), (lzma.compress, "xz")])
def test_bzip2_and_xz_are_looked_into(packed, name: str) -> None:
    assert "is a Windows executable" in att(part(packed(EXE), f"application/x-{name}", name=f"tool.{name}"))[0]
    assert att(part(packed(b"date,amount\n" * 50), f"application/x-{name}", name=f"export.{name}")) == []
    [detail] = att(part(packed(b"text " * 50), "application/pdf", name="invoice.pdf"))
    assert detail == f"attachment 'invoice.pdf' is a {name} file, though named 'invoice.pdf' (declared application/pdf)".replace("a xz", "an xz")


def test_a_disk_image_inside_a_zip_is_found() -> None:
    assert "ISO 9660 disk image" in " ".join(att(part(zipped([("invoice.pdf", ISO)]), "application/zip", name="invoice.zip")))


def test_a_declared_type_alone_is_a_claim_too() -> None:
    [detail] = att(part(b"7z\xbc\xaf\x27\x1c" + bytes(40), "image/png", name="scan.dat"))
    assert detail.endswith("7-Zip archive, which cannot be inspected, though declared image/png"), detail


@pytest.mark.parametrize("data, ctype, name", [
    (PDF, "application/pdf", "invoice.pdf"),
    (zipped([("word/document.xml", b"<w:document/>")]), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "a.docx"),
    (OLE_PLAIN, "application/msword", "a.doc"),
    (bytes(40000), "application/pdf", "blank.pdf"),  # zeros where an ISO marker would sit
    (b"BZhello, plain text that starts like bzip2", "text/plain", "notes.txt"),
])
def test_what_it_says_it_is_passes(data: bytes, ctype: str, name: str) -> None:
    assert att(part(data, ctype, name=name)) == []

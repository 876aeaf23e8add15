"""Dangerous attachments (AUP: no malware, no viruses).

An attachment is dangerous when its declared type, any of its names (RFC 2231 and RFC 2047
decoded; double extensions and right-to-left tricks seen through) or its bytes say it is an
executable, a script, a shortcut, an installer, a disk image, OneNote, compiled help or a
macro-enabled Office file, or when a zip, gzip, bzip2 or xz archive holds one, looked into in
memory within the policy's bounds (proxy.message.filetypes); and when its name or declared
type says one thing (a PDF, an image, a document) while its bytes are an archive, a disk
image or a program: the finding then names both. Optionally clamd scans the message too: its answer reaches this
check as the `clamav` fact (proxy/facts/clamav.py), and a clamd that was configured but could not
answer is reported as `lookup.failed` unless the policy says to relay regardless.
"""

from __future__ import annotations

from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from proxy.policy.context import LookupFailed
from proxy.message.mime import Message
from proxy.message.filetypes import ArchiveLimits, Rules, disguise, inspect, name_problem
from proxy.policy.context import Context
from proxy.policy.registry import Options, check, options
from proxy.policy.verdict import Finding

MAX_FINDINGS = 5
REMEDY = "do not send executables, scripts, installers or macro-enabled documents; link to a download on your site instead"

DEFAULT_EXTENSIONS = [
    # Windows executables, libraries, installers, shortcuts and control panel items
    "exe", "com", "scr", "pif", "cpl", "dll", "ocx", "sys", "drv", "msi", "msp", "mst", "msix",
    "msixbundle", "appx", "appxbundle", "appinstaller", "application", "gadget", "lnk", "url",
    "scf", "inf", "reg", "msc", "hta", "chm", "settingcontent-ms", "library-ms", "search-ms",
    # scripts
    "bat", "cmd", "vb", "vbs", "vbe", "js", "jse", "ws", "wsf", "wsc", "wsh", "ps1", "ps1xml",
    "ps2", "ps2xml", "psc1", "psc2", "psm1", "psd1", "sct", "sh", "bash", "csh", "ksh", "command",
    "py", "pyw", "pl", "rb", "jar", "jnlp", "xbap", "iqy", "slk",
    # disk images that Windows mounts with a click (used to smuggle executables past filters)
    "iso", "img", "vhd", "vhdx",
    # other platforms' installers and apps
    "apk", "dmg", "pkg", "app", "deb", "rpm", "run",
    # macro-enabled Office files, OneNote
    "docm", "dotm", "xlsm", "xltm", "xlam", "xla", "pptm", "potm", "ppsm", "ppam", "sldm", "xlsb", "one",
]
DEFAULT_TYPES = [
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
    "application/x-ms-dos-executable", "application/vnd.microsoft.portable-executable",
    "application/x-executable", "application/x-elf", "application/x-mach-binary",
    "application/x-sharedlib", "application/x-msi", "application/x-ms-installer",
    "application/x-ms-shortcut", "application/hta", "application/x-sh", "application/x-csh",
    "application/x-shellscript", "text/x-shellscript", "application/x-bat", "application/bat",
    "application/x-javascript", "application/javascript", "text/javascript", "text/vbscript",
    "application/x-vbscript", "application/java-archive", "application/x-java-jnlp-file",
    "application/vnd.android.package-archive", "application/x-apple-diskimage",
    "application/x-iso9660-image", "application/vnd.ms-word.document.macroenabled.12",
    "application/vnd.ms-word.template.macroenabled.12", "application/vnd.ms-excel.sheet.macroenabled.12",
    "application/vnd.ms-excel.template.macroenabled.12", "application/vnd.ms-excel.addin.macroenabled.12",
    "application/vnd.ms-excel.sheet.binary.macroenabled.12",
    "application/vnd.ms-powerpoint.presentation.macroenabled.12",
    "application/vnd.ms-powerpoint.slideshow.macroenabled.12",
    "application/vnd.ms-powerpoint.addin.macroenabled.12", "application/vnd.ms-powerpoint.template.macroenabled.12",
    "application/onenote", "application/msonenote",
]


class ClamavOptions(BaseModel):
    """`[checks.attachment.clamav]`: scanning with clamd over its socket (INSTREAM)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # "" (off), a unix socket path ("/run/clamav/clamd.ctl", "unix:/..."), or "tcp:host:port".
    address: str = ""
    timeout: float = Field(default=10.0, gt=0, le=120)
    # "attachments": only messages with attachments are sent to clamd; "all": every message.
    scan: Literal["attachments", "all"] = "attachments"
    # clamd configured but unreachable (or too slow): "lookup_failed" reports the rule
    # lookup.failed, whose action [actions] decides (quarantine holds it; reject answers a
    # temporary 451, see Verdict.reject_reply); "relay" lets the message go unscanned.
    on_unreachable: Literal["lookup_failed", "relay"] = "lookup_failed"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value or value.startswith(("/", "unix:/")):
            return value
        host, _, port = value[4:].rpartition(":") if value.startswith("tcp:") else ("", "", "")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return value
        raise ValueError(f"{value!r}: expected a unix socket path (/run/clamav/clamd.ctl) or tcp:HOST:PORT")


@options("attachment")
class AttachmentOptions(Options):
    """`[checks.attachment]`."""

    extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    types: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES))
    max_archive_depth: int = Field(default=3, ge=1, le=10)
    max_archive_entries: int = Field(default=1000, ge=1)
    max_archive_bytes: int = Field(default=100_000_000, ge=1)
    max_compression_ratio: int = Field(default=100, ge=2)
    max_inspect_bytes: int = Field(default=10_000_000, ge=4096)
    # RAR, 7-Zip, CAB, encrypted or unreadable archives, and archives past the bounds cannot
    # be looked into: "dangerous" reports them, "allow" lets them pass.
    opaque_archives: Literal["dangerous", "allow"] = "dangerous"
    clamav: ClamavOptions = ClamavOptions()
    _rules: Rules = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> "AttachmentOptions":
        limits = ArchiveLimits(
            max_depth=self.max_archive_depth,
            max_entries=self.max_archive_entries,
            max_total_bytes=self.max_archive_bytes,
            max_ratio=self.max_compression_ratio,
            inspect_bytes=self.max_inspect_bytes,
            opaque_dangerous=self.opaque_archives == "dangerous",
        )
        self._rules = Rules(
            frozenset(e.lower().lstrip(".") for e in self.extensions),
            frozenset(t.lower() for t in self.types),
            limits,
        )
        return self

    @property
    def rules(self) -> Rules:
        return self._rules


def attachment_problems(msg: Message, rules: Rules) -> list[str]:
    """Every reason one of the message's attachments is dangerous."""
    problems: list[str] = []
    for i, att in enumerate(msg.attachments, 1):
        what = f"attachment {att.filename[:80]!r}" if att.filename else f"attachment #{i} ({att.content_type})"
        if att.content_type in rules.types:
            problems.append(f"{what} is declared as {att.content_type}")
        for name in att.names:
            problem = name_problem(name, rules)
            if problem:
                problems.append(f"attachment {problem}")
        found = inspect(att.payload, what, rules)
        disguised = disguise(att.payload, att.names, att.content_type)
        if disguised:
            # Its name or declared type says one thing, its bytes another: say both.
            kind, says = disguised
            own = f"{what} is "
            if any(p.startswith(own) for p in found):
                found = [p + says if p.startswith(own) else p for p in found]
            else:
                found.insert(0, f"{what} is {kind}{says}")
        problems.extend(found)
    return list(dict.fromkeys(problems))


@check("attachment", rules=("attachment.dangerous", "lookup.failed"))
def dangerous(msg: Message, ctx: Context, opts: AttachmentOptions) -> Iterator[Finding]:
    problems = attachment_problems(msg, opts.rules) if msg.attachments else []
    scan = (ctx.facts or {}).get("clamav")
    if isinstance(scan, LookupFailed):
        if opts.clamav.on_unreachable == "lookup_failed":
            yield Finding("lookup.failed", f"virus scan not done: {scan.reason}", "try again later; the virus scanner did not answer")
    elif scan is not None:
        problems.extend(f"clamd found {sig}" for sig in getattr(scan, "found", ()))
    for problem in problems[:MAX_FINDINGS]:
        yield Finding("attachment.dangerous", problem, REMEDY)
    if len(problems) > MAX_FINDINGS:
        yield Finding("attachment.dangerous", f"and {len(problems) - MAX_FINDINGS} more dangerous attachment findings", REMEDY)

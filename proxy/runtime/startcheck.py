"""What `serve` would refuse at start, found without binding a port or creating a file.

`sendwarden config check` runs this after the configuration and the policy have validated:
the files the configuration names (TLS pair, credentials, DKIM keys, the unsubscribe key) are
read as the service reads them, and the directories it would create are checked for being
creatable. Each problem names the configuration key it comes from.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from proxy.config import Config
from proxy.tomlfile import ConfigError


@dataclass(frozen=True)
class ConfigFinding:
    key: str  # the configuration key, e.g. "tls.cert"
    text: str
    problem: bool  # False: a note (something start-up will do), not a refusal


def _creatable(path: Path) -> str:
    """"" when `path` is a writable directory or could be made as one, else why not."""
    p = path
    while not p.exists():
        if p.parent == p:
            return f"{path}: no existing parent directory"
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a directory"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable by this user" + (" (it may be by the service's)" if p != path else "")
    return ""


def check(config: Config) -> list[ConfigFinding]:
    """Everything start-up would trip over, as findings; none of it changes the system."""
    from proxy.outbound.dkimkeys import KeyFileError, load_key
    from proxy.runtime.tls import server_context
    from proxy.runtime.workers import plan_cpus, worker_count
    from proxy.smtp.auth import Credentials
    from proxy.unsubscribe.token import TokenKeys

    f = config.file
    out: list[ConfigFinding] = []

    def problem(key: str, text: str) -> None:
        out.append(ConfigFinding(key, text, True))

    def note(key: str, text: str) -> None:
        out.append(ConfigFinding(key, text, False))

    why = _creatable(config.state_dir)
    if why:
        problem("state_dir", why)
    if f.tls.cert:
        cert, key = config.path(f.tls.cert), config.path(f.tls.key)
        unreadable = [(k, p) for k, p in (("tls.cert", cert), ("tls.key", key)) if not os.access(p, os.R_OK)]
        for k, p in unreadable:
            problem(k, f"{p}: " + ("not readable by this user" if p.exists() else "file not found"))
        if not unreadable:
            try:
                server_context(cert, key)
            except (OSError, ssl.SSLError) as exc:
                problem("tls.cert", f"the certificate and key do not load as a pair: {exc}")
    elif f.tls.dev_cert:
        note("tls.dev_cert", f"a self-signed development certificate is made under {config.state_dir} on first start")
    else:
        note("tls", "no certificate: STARTTLS, and so AUTH, are not offered")
    if f.auth.credentials:
        try:
            Credentials.load(config.path(f.auth.credentials))
        except ConfigError as exc:
            problem("auth.credentials", str(exc))
    if f.dkim.sign:
        for i, dk in enumerate(f.dkim.keys):
            try:
                load_key(config.path(dk.key), dk.domain, dk.selector)
            except KeyFileError as exc:
                problem(f"dkim.keys[{i}].key", str(exc))
    u = f.unsubscribe
    if u.base_url or u.mailto_domain or u.listen:
        path = config.unsubscribe_key_path
        if path.exists():
            try:
                TokenKeys.load(path, create=False)
            except (OSError, ValueError) as exc:
                problem("unsubscribe.key_file", f"{path}: {exc}")
        else:
            why = _creatable(path.parent)
            if why:
                problem("unsubscribe.key_file", f"{path} is missing and cannot be made: {why}")
            else:
                note("unsubscribe.key_file", f"{path} is made (0600) on first start")
    try:
        plan_cpus(f.cpu_affinity, worker_count(f.workers))
    except ValueError as exc:
        problem("cpu_affinity", str(exc))
    store = config.store_url
    if store.startswith("sqlite:"):
        why = _creatable(Path(store[len("sqlite:"):]).parent)
        if why:
            problem("store", why)
    else:
        note("store", "a PostgreSQL store is not contacted by this check")
    if f.upstream.url.startswith("maildir:"):
        note("upstream.url", "a development Maildir: mail is not sent on")
    if f.quarantine.notify.command:
        prog = f.quarantine.notify.command[0]
        if not os.access(prog, os.X_OK):
            problem("quarantine.notify.command", f"{prog} is not an executable file")
    return out

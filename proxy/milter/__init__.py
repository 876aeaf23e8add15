"""Milter mode: sendwarden as a mail filter for Postfix (smtpd_milters) or Sendmail.

Why an in-tree codec rather than a library (checked 2026-11, PyPI and the packages' sources):

- pymilter binds Sendmail's C libmilter: it needs Debian's libmilter-dev to build, and libmilter
  runs each connection in a thread with blocking callbacks, which fits an asyncio policy engine
  badly (every check and lookup would have to hop threads).
- purepythonmilter (0.0.1, Feb 2023, no release since) is pure asyncio, but an "alpha" framework
  with its own application model, attrs and logging set-up; its packet decoder rebuilds the
  whole buffer (`bytes +=`, then slicing) on every read, which is quadratic for a peer that
  trickles a large packet.
- kilter.protocol (0.6.0, May 2024, "Development Status: Planning") parses and checks
  replies against a state table, but: its table forbids TEMPFAIL at MAIL and REPLYCODE at
  CONNECT, both of which we need; a zero-length packet is mis-framed (it skips 4 bytes and
  parses on from the command byte); malformed content surfaces as bare ValueError or even
  StopIteration (SMFIC_MAIL without an address), checks are `assert`s that vanish under -O, and
  an over-long length just waits for more data ("NeedsMore") unless the caller notices.
- python-libmilter (2.0.0) runs callbacks in threads or forked processes (or a select.poll
  loop of its own), not on an asyncio loop.

The protocol itself is small: length-prefixed packets with a command byte and NUL-terminated
strings. So `wire` frames packets with a hard size limit, `commands` parses the MTA's packets
strictly, `replies` encodes ours, `options` negotiates (version 6, as Postfix 3 speaks it),
`session` drives one connection and `server` listens on TCP or UNIX sockets. The tests use an
independent client, the `miltertest` package (pure Python, GPL, test-only), and a real Postfix.

The application interface is `MilterApplication` (see application.py for the call order).
"""

from proxy.milter.application import (
    AddHeader,
    ChangeHeader,
    Decision,
    HeaderEdit,
    InsertHeader,
    Macros,
    MilterApplication,
    MilterOutcome,
    MilterTransaction,
)
from proxy.milter.options import DEFAULT_MACROS, MilterOptions
from proxy.milter.server import MilterServer, parse_address
from proxy.milter.wire import Family, MacroStage, ProtocolError

__all__ = [
    "AddHeader",
    "ChangeHeader",
    "DEFAULT_MACROS",
    "Decision",
    "Family",
    "HeaderEdit",
    "InsertHeader",
    "MacroStage",
    "Macros",
    "MilterApplication",
    "MilterOptions",
    "MilterServer",
    "MilterOutcome",
    "ProtocolError",
    "MilterTransaction",
    "parse_address",
]

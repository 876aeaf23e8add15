"""The class of every part the MIME parser builds: the stdlib's compat32 message, with its
content type and parameters (boundary, charset, file name) looked up by header value.

The stdlib parses a Content-Type's parameters (RFC 2231 decoding and all) again at every
get_param, get_boundary, get_content_charset or get_filename, and splits the type off again at
every get_content_type; the parser itself asks for the type four times a part. Both answers
depend on nothing but the header's value (a str without surrogate escapes, as compat32 hands
it back unchanged), and newsletters from one sender share their few values, so they are
cached by that value, computed by the stdlib itself on a message that holds only that header.
Any other value (absent, 8-bit, very long) takes the stdlib's own way.
"""

from __future__ import annotations

from email.message import Message as EmailMessage
from email.policy import compat32
from functools import lru_cache
from typing import Any

__all__ = ["Part"]

_MISSING = object()
_LONGEST = 1024  # longer values (hostile ones, 100 KB file names) are not kept


@lru_cache(maxsize=1024)
def _param(value: str, param: str, header: str, unquote: bool) -> Any:
    alone = EmailMessage(policy=compat32)
    alone[header] = value
    return alone.get_param(param, _MISSING, header, unquote)


@lru_cache(maxsize=256)
def _content_type(value: str) -> str:
    alone = EmailMessage(policy=compat32)
    alone["Content-Type"] = value
    return alone.get_content_type()


class Part(EmailMessage):
    """A compat32 message whose type and parameter lookups are cached by header value."""

    def get_param(self, param: str, failobj: Any = None, header: str = "content-type", unquote: bool = True) -> Any:
        value = self.get(header)
        if type(value) is not str or len(value) > _LONGEST:
            return super().get_param(param, failobj, header, unquote)
        found = _param(value, param, header, unquote)
        return failobj if found is _MISSING else found

    def get_content_type(self) -> str:
        value = self.get("content-type")
        if type(value) is not str or len(value) > _LONGEST:
            return super().get_content_type()
        return _content_type(value)

"""Headers prepended to a parsed message (the relay's List-Unsubscribe): the view reads exactly
as a fresh parse of the longer bytes would, without parsing the message again."""

from __future__ import annotations

import pytest

import proxy.message.mime
from proxy.message.mime import Message
from proxy.policy.engine import judge
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.context import Context
from tests.conftest import FIXTURES
from tests.support.recipient_helpers import BARE

BLOCK = (b"List-Unsubscribe: <https://unsub.test/unsubscribe/abc>,\r\n <mailto:unsubscribe+abc@unsub.test?subject=unsubscribe>\r\n"
         b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
# A big message (its base64 and prose runs are elided before parsing, proxy/message/elide.py):
# the payloads are read back from the message's bytes, which the block moves.
_B64 = b"".join(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n" for _ in range(6000))
BIG = (b"From: Shop <news@shop.example.com>\r\nTo: reader@example.org\r\nSubject: the report\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
       + b"".join(b"Line %d of the report, with words\r\n" % i for i in range(9000))
       + b"--b\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       + _B64 + b"--b--\r\n")
MESSAGES = [BARE, BIG, *(p.read_bytes() for p in sorted((FIXTURES / "corpus").glob("*.eml")))]


def reading(m: Message) -> tuple[object, ...]:
    return (m.raw, m.items(), m.header("List-Unsubscribe"), m.raw_headers("List-Unsubscribe-Post"),
            m.count("List-Unsubscribe"), m.subject, m.from_addresses, m.problems, m.defects, m.text, m.html,
            m.links, m.attachments, m.folded_text, m.unmasked_text)


@pytest.mark.parametrize("raw", MESSAGES, ids=range(len(MESSAGES)))
@pytest.mark.parametrize("viewed_first", [False, True])
def test_prepended_view_reads_as_a_fresh_parse(raw: bytes, viewed_first: bool) -> None:
    original = Message.from_bytes(raw)
    if viewed_first:  # views built before the insertion (as a heavy message's are) are carried over
        reading(original)
    prepended = original.with_headers_prepended(BLOCK)
    assert reading(prepended) == reading(Message.from_bytes(BLOCK + raw))
    assert reading(original) == reading(Message.from_bytes(raw))  # the original view is unchanged


def test_a_big_message_is_elided_and_its_attachment_read_through_the_block() -> None:
    original = Message.from_bytes(BIG)
    assert original._elided is not None
    prepended = original.with_headers_prepended(BLOCK)
    assert [a.size for a in prepended.attachments] == [len(_B64) // 78 * 57]
    assert prepended.attachments == Message.from_bytes(BLOCK + BIG).attachments


def test_prepended_view_is_judged_as_a_fresh_parse() -> None:
    policy = load_policy(BUILTIN_DEFAULT)
    ctx = Context(stream="marketing", marketing=True, mail_from="news@shop.example.com", rcpts=("reader@example.org",))
    before = judge(policy, Message.from_bytes(BARE), ctx)
    after = judge(policy, Message.from_bytes(BARE).with_headers_prepended(BLOCK), ctx)
    assert after == judge(policy, Message.from_bytes(BLOCK + BARE), ctx)
    rules = [{j.finding.rule for j in v.judged} for v in (before, after)]
    assert "unsubscribe.header_missing" in rules[0] - rules[1]  # the checks saw the inserted headers


def test_prepending_parses_the_block_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Message.from_bytes(BARE)
    parsed: list[bytes] = []
    real = proxy.message.mime._parse
    monkeypatch.setattr(proxy.message.mime, "_parse", lambda raw: parsed.append(raw) or real(raw))
    original.with_headers_prepended(BLOCK)
    assert parsed == []


@pytest.mark.parametrize("block", [
    b"Content-Type: text/plain\r\n", b"MIME-Version: 1.0\r\n", b"Subject: other\r\n", b"From: x@y.example\r\n",
    b"List-Unsubscribe: <https://a.example/u>",  # no line end
    b"not a header line\r\n", b"",
])
def test_what_cannot_be_prepended_without_a_new_parse(block: bytes) -> None:
    with pytest.raises(ValueError):
        Message.from_bytes(BARE).with_headers_prepended(block)

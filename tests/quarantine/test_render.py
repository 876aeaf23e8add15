"""The reviewer's view of a held message: HTML as text with bs4, masking, terminal safety."""

from __future__ import annotations

from proxy.commands.quarantine import safe
from proxy.quarantine.render import Masker, html_to_text, mask_address, readable
from tests.support.quarantine_env import QEnv, make_env


def test_html_becomes_readable_text_with_numbered_links() -> None:
    text, links = html_to_text(
        "<html><head><title>t</title><style>.x{}</style></head><body>"
        "<table><tr><td>Name</td><td>Price</td></tr><tr><td>Tea</td><td>3</td></tr></table>"
        "<p>Read our <a href='https://shop.example/privacy'>privacy policy</a>.<br>Bye<!-- hidden comment --></p>"
        "<img src='x.png' alt='logo'><script>track()</script></body></html>"
    )
    assert text.splitlines()[:2] == ["Name Price", "Tea 3"]
    assert "Read our privacy policy [1]." in text and "\nBye" in text
    assert "[image: logo]" in text
    assert "track()" not in text and "hidden comment" not in text and ".x{}" not in text
    assert links == [("privacy policy", "https://shop.example/privacy")]


def test_masking_covers_every_form_of_a_recipient() -> None:
    assert mask_address("reader@example.org") == "r***@example.org"
    m = Masker(["Reader@Example.org"])
    assert m("to READER@example.org and https://x.example/u?e=reader%40example.org") == (
        "to r***@example.org and https://x.example/u?e=r%2A%2A%2A%40example.org")
    assert m.header("Cc", "Other <other@else.example>") == "Other <o***@else.example>"
    assert m.header("From", "Shop <news@shop.example>") == "Shop <news@shop.example>"
    assert Masker(["reader@example.org"], enabled=False)("reader@example.org") == "reader@example.org"


def test_text_only_message_and_attachments() -> None:
    raw = (b"From: a@b.example\r\nTo: reader@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           b"See https://b.example/privacy now\r\n--b\r\nContent-Type: application/x-msdownload; name=run.exe\r\n"
           b"Content-Disposition: attachment; filename=run.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAA=\r\n--b--\r\n")
    view = readable(raw, Masker(["reader@example.org"]))
    assert view.body_kind == "text" and "See https://b.example/privacy now" in view.body
    assert view.links == [("", "https://b.example/privacy")]
    assert view.attachments == [("run.exe", "application/x-msdownload", 8)]
    assert ("To", "r***@example.org") in view.headers


def test_terminal_escapes_are_neutralised() -> None:
    assert safe("Sale\x1b[2J\x1b]0;pwned\x07 now\ud800") == "Sale?[2J?]0;pwned? now?"
    assert safe("line\nnext\ttab") == "line\nnext\ttab"


async def test_show_output_carries_no_escape_sequences(tmp_path, start_relay, sink, cli_env) -> None:
    env: QEnv = await make_env(tmp_path, start_relay, sink, cli_env)
    raw = (b"From: news@shop.example.com\r\nTo: reader@example.org\r\nSubject: Sale \x1b[2J\x1b]0;owned\x07\r\n\r\n"
           b"Body with \x1b[31mred\x1b[0m and \xff\xfe bytes\r\n")
    hold_id = await env.send("news@shop.example.com", ["reader@example.org"], raw)
    for args in (("show", hold_id), ("list",)):
        r = await env.cli("quarantine", *args)
        assert r.code == 0 and "\x1b" not in r.out and "\x07" not in r.out
    shown = await env.cli("quarantine", "show", hold_id)
    assert "Subject: Sale ?[2J?]0;owned?" in shown.out and "?[31mred" in shown.out


def test_deep_nesting_renders_without_recursion_and_bidi_is_named() -> None:
    n = 20_000
    html = "<html><body>" + "<div>" * n + "deep <a href='https://x.example/'>here</a>" + "</div>" * n + "</body></html>"
    assert html_to_text(html) == ("deep here [1]", [("here", "https://x.example/")])
    assert safe("Invoice \u202egpj.exe\u200b") == "Invoice <U+202E>gpj.exe<U+200B>"
    assert safe("family \U0001F468\u200d\U0001F469") == "family \U0001F468\u200d\U0001F469"  # ZWJ stays

"""One IDNA for every host: link hosts (proxy.message.urls) and sender domains
(proxy.message.domains) turn Unicode names into the same A-labels, IDNA 2008 with UTS 46."""

from __future__ import annotations

import pytest

from proxy.message.domains import to_alabel
from proxy.message.urls import host_of, idna_host, registrable


@pytest.mark.parametrize("unicode_name, alabel", [
    ("faß.de", "xn--fa-hia.de"),  # IDNA 2003 made this fass.de, another domain
    ("Bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"),  # UTS 46 maps case
    ("ｅｘａｍｐｌｅ.com", "example.com"),  # fullwidth is mapped, ASCII stays ASCII
    ("p\u0430ypal.com", "xn--pypal-4ve.com"),  # a Cyrillic а is a different domain
    ("ελληνικά.gr", "xn--hxargifdar.gr"),
])
def test_links_and_senders_agree(unicode_name: str, alabel: str) -> None:
    assert to_alabel(unicode_name) == alabel
    assert idna_host(unicode_name) == alabel
    assert host_of(f"https://{unicode_name}/path") == alabel
    assert registrable(unicode_name) == alabel


def test_an_invalid_name_keeps_what_cannot_be_converted() -> None:
    assert to_alabel("faß.de\u0000x") is None
    assert idna_host("faß.ex ample") == "xn--fa-hia.ex ample"

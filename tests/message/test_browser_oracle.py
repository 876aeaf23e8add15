"""A real browser is the oracle for visibility (issue 20, point 5): Debian's chromium, headless,
renders each visibility-corpus message's HTML (and the corpus newsletters') and reports which links and words a reader sees;
the test fails where sendwarden's HTML view (proxy/message/html.py) disagrees.

The page gets one script appended (the messages have none of their own): it walks the body's
text, and a text is seen when its element is rendered (checkVisibility: display, visibility,
content-visibility, opacity), it has a box of at least 1x1 px inside the page (off-screen,
zero-size, scaled and clipped boxes have none, or are not hit at their centre), its font is
larger than 1px, and its colour can be read on the background painted under it (the first
ancestor background that is opaque; a background image means unknown, i.e. seen; contrast as
proxy/message/styles.py computes it). The words and link targets seen are written into the DOM,
which `--dump-dom` prints. No network: every host resolves to nothing and the proxy is a closed
loopback port. The window is 800 px wide, the width cascade.VIEWPORT_PX judges media queries at.
"""

from __future__ import annotations

import html as htmlmod
import json
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from proxy.message.cascade import VIEWPORT_PX
from proxy.message.html import extract
from proxy.message.styles import MIN_CONTRAST, MIN_OPACITY, TINY_FONT_PX
from tests.conftest import FIXTURES
from tests.policy.checks.judging import message

FOLDER = FIXTURES / "enforcement" / "visibility"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

ORACLE = """
<script>
window.addEventListener('load', function () {
  const MIN_CONTRAST = %(contrast)s, MIN_OPACITY = %(opacity)s, TINY = %(tiny)s;
  function rgba(s) {
    const m = s.match(/rgba?\\(([^)]*)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(x => x).map(Number);
    return [p[0] / 255, p[1] / 255, p[2] / 255, p.length > 3 ? p[3] : 1];
  }
  function lum(c) {
    const ch = v => v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    return 0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2]);
  }
  function contrast(a, b) {
    const x = lum(a), y = lum(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  }
  function judge(doc, win) {
  const getComputedStyle = win.getComputedStyle.bind(win);
  function painted(el) {  // the background under el's text: null when an image may be there
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const cs = getComputedStyle(n);
      if (cs.backgroundImage && cs.backgroundImage !== 'none') return null;
      const c = rgba(cs.backgroundColor);
      if (c && c[3] >= 0.5) return c;
    }
    return [1, 1, 1, 1];
  }
  function opacity(el) {
    let o = 1;
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) o *= parseFloat(getComputedStyle(n).opacity);
    return o;
  }
  function hit(el, rects) {  // a box of 1x1 px or more in the page whose centre hits el (not an ancestor behind it)
    for (const r of rects) {
      if (r.width < 1 || r.height < 1 || r.right <= 0 || r.bottom <= 0) continue;
      const at = doc.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      if (at && (at === el || el.contains(at))) return true;
    }
    return false;
  }
  function seen(text) {
    const el = text.parentElement;
    if (!el.checkVisibility({opacityProperty: true, visibilityProperty: true, contentVisibilityAuto: true})) return false;
    if (opacity(el) < MIN_OPACITY) return false;
    const cs = getComputedStyle(el);
    if (parseFloat(cs.fontSize) <= TINY) return false;
    const colour = rgba(cs.color);
    if (colour && colour[3] < MIN_OPACITY) return false;
    const back = painted(el);
    if (colour && back) {  // a translucent colour is painted over the background
      const a = colour[3], seenColour = [0, 1, 2].map(i => a * colour[i] + (1 - a) * back[i]);
      if (contrast(seenColour, back) < MIN_CONTRAST) return false;
    }
    const range = doc.createRange();
    range.selectNodeContents(text);
    return hit(el, range.getClientRects());
  }
  function shown(el) {  // an element (an image) is rendered and has a box that is hit where it is drawn
    if (!el.checkVisibility({opacityProperty: true, visibilityProperty: true, contentVisibilityAuto: true})) return false;
    return opacity(el) >= MIN_OPACITY && hit(el, el.getClientRects());
  }
  const words = [], links = new Set();
  for (const img of doc.querySelectorAll('a[href] img')) if (shown(img)) links.add(img.closest('a[href]').getAttribute('href').trim());
  const walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.data.trim() || !seen(t)) continue;
    words.push(t.data);
    const a = t.parentElement.closest('a[href]');
    if (a) links.add(a.getAttribute('href').trim());
  }
  return {words: words.join(' '), links: [...links].sort()};
  }
  const results = {};
  for (const frame of document.querySelectorAll('iframe')) results[frame.name] = judge(frame.contentDocument, frame.contentWindow);
  const out = document.createElement('pre');
  out.id = 'sendwarden-oracle';
  out.textContent = JSON.stringify(results);
  document.body.appendChild(out);
});
</script>
""".replace("%(contrast)s", str(MIN_CONTRAST)).replace("%(opacity)s", str(MIN_OPACITY)).replace("%(tiny)s", str(TINY_FONT_PX))

_RESULT = re.compile(r'<pre id="sendwarden-oracle">(.*?)</pre>', re.DOTALL)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def render(pages: dict[str, str], work: Path) -> dict[str, dict[str, object]]:
    """What chromium shows of each HTML page: {name: {"words": "...", "links": [hrefs]}}. One
    browser renders them all, each in its own srcdoc frame (same origin as the page that judges
    them) VIEWPORT_PX wide."""
    frames = "".join(f'<iframe name="{htmlmod.escape(name)}" width="{VIEWPORT_PX}" height="8000" frameborder="0" '
                     f'srcdoc="{htmlmod.escape(html)}"></iframe>' for name, html in pages.items())
    page = work / "page.html"
    page.write_text(f"<!DOCTYPE html><html><body>{frames}{ORACLE}</body></html>", encoding="utf-8")
    cmd = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", "--proxy-server=127.0.0.1:9",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={work / 'profile'}",
           f"--window-size={VIEWPORT_PX + 100},3000", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    found = _RESULT.search(out.stdout)
    assert found, f"chromium printed no result (exit {out.returncode}): {out.stderr[-500:]}"
    return dict(json.loads(htmlmod.unescape(found.group(1))))


NAMES = sorted(p.name for p in FOLDER.glob("*.eml"))
# The corpus's real-looking newsletters, beside the visibility corpus.
NEWSLETTERS = ["newsletter_en.eml", "newsletter_mjml.eml", "newsletter_nl.eml", "receipt.eml"]
PATHS = {name: FOLDER / name for name in NAMES} | {name: FIXTURES / "corpus" / name for name in NEWSLETTERS}


@pytest.fixture(scope="module")
def browser() -> dict[str, dict[str, object]]:
    """Every corpus message rendered once, by one chromium."""
    with tempfile.TemporaryDirectory() as work:
        return render({name: message(path).html for name, path in PATHS.items()}, Path(work))


@pytest.mark.parametrize("name", sorted(PATHS))
def test_sendwarden_sees_what_the_browser_shows(name: str, browser: dict[str, dict[str, object]]) -> None:
    seen = browser[name]
    view = extract(message(PATHS[name]).html)
    assert sorted({a.href for a in view.anchors}) == seen["links"], f"links: sendwarden {view.anchors}, chromium {seen['links']}"
    ours, theirs = _words(view.visible_text), _words(str(seen["words"]))
    assert ours == theirs, f"only sendwarden sees {sorted(ours - theirs)}; only chromium sees {sorted(theirs - ours)}"


def test_labels_name_the_same_messages() -> None:
    labels = tomllib.loads((FOLDER / "labels.toml").read_text())["messages"]
    assert set(labels) == set(NAMES)

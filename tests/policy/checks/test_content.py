"""content.prohibited: the AUP's categories from editable lists, matched on word boundaries
over the subject and the visible text, with few false positives."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy.checks.content import ContentOptions
from proxy.policy.loader import load_policy
from proxy.tomlfile import ConfigError
from tests.policy.checks.judging import DEFAULT, FOOTER, found, mail, message, policy, rules


def content(html: str = "", text: str = "", subject: str = "Winter news", pol=None) -> list[str]:
    return [f.detail for f in found(mail(FOOTER + html, text, subject=subject), pol, family="content")]


@pytest.mark.parametrize("html, category, term", [
    ("<p>Watch free porn videos</p>", "adult", "free porn"),
    ("<p>Hot singles in your area</p>", "adult", "hot singles"),
    ("<p>Buy cocaine and MDMA, next-day delivery</p>", "drugs", "buy cocaine"),
    ("<p>Xanax without a prescription</p>", "drugs", "without a prescription"),
    ("<p>Untraceable ghost guns, shipped discreetly</p>", "weapons", "ghost guns"),
    ("<p>Explosives for sale</p>", "weapons", "explosives for sale"),
    ("<p>Claim 200 free spins at our crypto casino</p>", "gambling", "free spins"),
    ("<p>Get rich quick with our system</p>", "get_rich_quick", "get rich quick"),
    ("<p>This hot stock is about to take off</p>", "get_rich_quick", "hot stock"),
    ("<p>Join my downline in our MLM opportunity</p>", "get_rich_quick", "mlm opportunity"),
    ("<p>White power!</p>", "hate", "white power"),
    ("<p>Kill all immigrants</p>", "hate", "kill all immigrants"),
    # Dutch
    ("<p>Wiet bestellen met levering aan huis</p>", "drugs", "wiet bestellen"),
    ("<p>Vuurwapens te koop</p>", "weapons", "vuurwapens te koop"),
    ("<p>Gokken zonder CRUKS</p>", "gambling", "gokken zonder cruks"),
    ("<p>Snel rijk worden met ons systeem</p>", "get_rich_quick", "snel rijk worden"),
    ("<p>Bekijk onze sexcams</p>", "adult", "sexcams"),
    ("<p>Verdubbel je geld in een week</p>", "get_rich_quick", "verdubbel je geld"),
])
def test_each_category_is_found(html: str, category: str, term: str) -> None:
    [detail] = content(html)
    assert detail.startswith(f"category {category} ")
    assert repr(term) in detail


@pytest.mark.parametrize("html", [
    "<p>Visit our drug store on the high street</p>",
    "<p>The drugstore chain opens in Sussex, Essex and Middlesex</p>",
    "<p>A cocktail evening in Scunthorpe, with a cockpit tour</p>",
    "<p>It was a shotgun wedding, and a lovely one</p>",
    "<p>Our therapist explains the analysis of sleep</p>",
    "<p>Grape harvest: assassination of the summer heat</p>",
    "<p>Bet you didn't know: casino-themed party decorations</p>",
    "<p>Win a trip to Las Vegas (no purchase necessary)</p>",
    "<p>Spice up dinner with our hot stockpot recipes</p>",
    "<p>We stock the hottest boots</p>",
    "<p>De drogisterij in Middelburg, en een cocktail in Essen</p>",
    "<p>Sexton Street pharmacy and the Essex cocktail club</p>",
    "<p>Pornic and Pornichet, two lovely towns in France</p>",
    "<p>Penny stockings and hot stockpots, now half price</p>",
])
def test_ordinary_newsletters_pass(html: str) -> None:
    assert content(html) == []


def test_subject_is_scanned() -> None:
    assert content(subject="Gratis spins bij ons online casino")[0].startswith("category gambling (en/nl list)")


def test_text_part_is_scanned() -> None:
    [detail] = content(text="Ponzi returns guaranteed profits\n")
    assert "'ponzi'" in detail and "'guaranteed profits'" in detail


@pytest.mark.parametrize("html", [
    '<div style="display:none">buy cocaine</div>',
    '<span style="visibility: hidden">buy cocaine</span>',
    '<p hidden>buy cocaine</p>',
    "<script>var t = 'buy cocaine';</script>",
    "<style>/* buy cocaine */</style>",
    "<!-- buy cocaine -->",
    '<div style="font-size:0">buy cocaine</div>',
    '<div style="max-height:0;overflow:hidden">buy cocaine</div>',
    '<a href="https://shop.example.com/buy-cocaine">our range</a>',  # URLs are not visible text
])
def test_invisible_html_is_not_scanned(html: str) -> None:
    assert content(html) == []


def test_words_split_by_inline_markup_are_joined() -> None:
    assert content("<p>Get <b>rich</b> <i>qu</i>ick!</p>") != []
    # a space between cells (in a table: a browser drops <td> tags outside one, and reads "richquick")
    assert content("<table><tr><td>get rich</td><td>quick</td></tr></table>")[0].startswith("category get_rich_quick")


def test_one_finding_per_category_with_the_terms() -> None:
    details = content("<p>Buy cocaine, buy heroin, buy xanax, buy tramadol. Online casino!</p>")
    assert len(details) == 2
    drugs = next(d for d in details if d.startswith("category drugs"))
    assert "'buy cocaine', 'buy heroin', 'buy xanax' and 1 more" in drugs


def test_categories_can_be_ignored() -> None:
    pol = policy({"content": {"ignore_categories": ["gambling"]}})
    assert content("<p>Online casino with free spins</p>", pol=pol) == []
    assert content("<p>Buy cocaine</p>", pol=pol) != []


def test_lists_compile_once_into_one_pattern() -> None:
    opts = DEFAULT.options["content"]
    assert isinstance(opts, ContentOptions)
    assert opts.languages == ("en", "nl", "de", "fr", "es", "it", "pt", "pl")
    assert opts.compiled.terms.size > 8 * 50 and opts.compiled.terms.anchored
    # A second policy naming the same lists shares the compiled patterns.
    assert policy({"content": {"ignore_categories": ["hate"]}}).options["content"].compiled is opts.compiled


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_own_list_relative_to_the_policy_file(tmp_path: Path) -> None:
    write(tmp_path, "lists/de.toml", 'language = "de"\n[categories.drugs]\nterms = ["koks kaufen", "re:gras\\\\s+bestellen"]\n'
          '[allow]\nterms = ["koks kaufen im baumarkt"]\n')
    pol_file = write(tmp_path, "policy.toml", '[checks.content]\nlists = ["lists/de.toml", "builtin:en"]\n')
    pol = load_policy(pol_file)
    assert content("<p>Koks kaufen!</p>", pol=pol) == ["category drugs (de list): 'koks kaufen'"]
    assert content("<p>Gras   bestellen</p>", pol=pol) != []
    assert content("<p>Koks kaufen im Baumarkt (Grillkohle)</p>", pol=pol) == []
    assert content("<p>Buy cocaine</p>", pol=pol) != []
    assert content("<p>Wiet bestellen</p>", pol=pol) == []  # the Dutch list is not named


@pytest.mark.parametrize("list_text, error", [
    ('language = "de"\n[categories.x]\nterms = ["re:(unclosed"]\n', r"categories\.x\.terms\[0\].*not a valid regular expression"),
    ('language = "de"\n[categories.x]\nterms = ["mid*dle"]\n', r"categories\.x\.terms\[0\].*only allowed at the end"),
    ('language = "de"\n[categories.x]\nterms = ["ok"]\nunknown = 1\n', r"unknown: unknown key"),
    ('[categories.x]\nterms = ["ok"]\n', r"language: required, but not set"),
    ('language = "de"\n[categories.allow]\nterms = ["ok"]\n', r"reserved name"),
])
def test_bad_lists_are_config_errors_naming_file_and_key(tmp_path: Path, list_text: str, error: str) -> None:
    write(tmp_path, "bad.toml", list_text)
    pol_file = write(tmp_path, "policy.toml", '[checks.content]\nlists = ["bad.toml"]\n')
    with pytest.raises(ConfigError, match=r"policy\.toml:1: checks\.content.*bad\.toml.*" + error):
        load_policy(pol_file)


def test_missing_list_is_a_config_error(tmp_path: Path) -> None:
    pol_file = write(tmp_path, "policy.toml", '[checks.content]\nlists = ["builtin:xx", "nope.toml"]\n')
    with pytest.raises(ConfigError, match="builtin:xx: no built-in content list"):
        load_policy(pol_file)


def test_corpus_newsletters_mention_tricky_words() -> None:
    """The compliant corpus really does carry the false-positive traps."""
    seen = message("newsletter_en.eml").folded_text
    for word in ("drug store", "sussex", "middlesex", "cocktail", "scunthorpe", "shotgun wedding"):
        assert word in seen
    assert rules("newsletter_en.eml", family="content") == []


@pytest.mark.parametrize("html, category, language, words", [
    ("Semi-automatic rifles and bulk 9mm ammunition at clearance prices. No licence check, discreet shipping.",
     "weapons", "en", ["'rifles'", "'no licence check'"]),
    ("Halbautomatische Gewehre und 9-mm-Munition zu Sonderpreisen. Keine Lizenzprüfung, diskreter Versand.",
     "weapons", "de", ["'gewehre'", "'diskreter versand'"]),
    ("Fusils semi-automatiques et munitions à prix cassés. Sans permis, livraison discrète.",
     "weapons", "fr", ["'munitions'", "'sans permis'"]),
    ("Cocaína pura, 60 € el gramo, envío discreto a toda España.", "drugs", "es", ["'cocaína'", "'envío discreto'"]),
    ("Casinò: bonus di benvenuto di 500 €, deposito minimo 10 €, prelievi veloci.", "gambling", "it", ["'casinò'", "'bonus'"]),
    ("Maconha de qualidade, entrega discreta, pagamento por PIX.", "drugs", "pt", ["'maconha'", "'entrega discreta'"]),
    ("Mefedron najwyższej jakości, 50 zł za gram, dyskretna wysyłka.", "drugs", "pl", ["'mefedron'", "'dyskretna wysyłka'"]),
])
def test_an_offer_in_plain_words_is_found(html: str, category: str, language: str, words: list[str]) -> None:
    [detail] = content(f"<p>{html}</p>")
    assert detail.startswith(f"category {category} ({language} list): ")
    assert all(w in detail for w in words), detail


@pytest.mark.parametrize("html", [
    "Police seized 200 kg of cocaine worth €10 million in the port, the court heard.",
    "Our museum's new exhibition shows 300 rifles and pistols from the 18th century. Tickets €12, shop open daily.",
    "Cocktail menu: Pornstar Martini £9, Sex on the Beach £8. Order at the bar, happy hour prices.",
    "Our free guide for parents: talking to your child about sex, consent and pornography. Order a printed copy for £2 including delivery.",
    "Viagra Connect is now at our pharmacy: £19.99, order online, free delivery.",
    "EuroMillions jackpot €130 million! Tickets €2.50, buy online. Licensed by the Gambling Commission. 18+ play responsibly.",
    "Whisky sale: Gunpowder gin £34, Kalashnikov vodka £29, Smoking Gun bourbon £39. Free shipping over £50.",
    "Glue guns and nerf guns at clearance prices, free shipping on every order.",
    "Die Polizei hat 40 Gewehre und Munition beschlagnahmt; der Prozess beginnt im Mai. Abo ab 9,90 €, jetzt bestellen.",
    "Ouverture du musée : une exposition de fusils anciens. Billets 12 €, boutique, commande en ligne.",
])
def test_a_subject_without_an_offer_is_not_found(html: str) -> None:
    assert content(f"<p>{html}</p>") == []


@pytest.mark.parametrize("html, word", [
    ("Try our new c-a-s-i-n-o tonight", "casino"),
    ("The best c\u0430sino in town", "casino"),  # Cyrillic а
    ("Real p0rn here", "porn"),
    ("Tonight: k o k a i n", "kokain"),
])
def test_a_subject_in_disguise_is_found(html: str, word: str) -> None:
    [detail] = content(f"<p>{html}</p>")
    assert f"'{word}' written in disguise" in detail


@pytest.mark.parametrize("html, term", [
    ("Cheap v1agra, order today", "cheap viagra"),
    ("Cheap v i a g r a", "cheap viagra"),
    ("Online c&shy;asino with free spins", "online casino"),
    ("Online ca<b>s</b>ino", "online casino"),
    ("\uff4f\uff4e\uff4c\uff49\uff4e\uff45 \uff43\uff41\uff53\uff49\uff4e\uff4f", "online casino"),
])
def test_a_term_in_disguise_is_found(html: str, term: str) -> None:
    [detail] = content(f"<p>{html}</p>")
    assert repr(term) in detail


def test_policy_terms_allow_phrases_and_offers_switch() -> None:
    own = policy({"content": {"terms": {"gambling": ["lucky spin palace"]}, "allow": ["casino evening"]}})
    [detail] = content("<p>Visit Lucky Spin Palace</p>", pol=own)
    assert detail == "category gambling (policy list): 'lucky spin palace'"
    assert content("<p>Casino evening: tickets £20, order now, bonus drink</p>") != []
    assert content("<p>Casino evening: tickets £20, order now, bonus drink</p>", pol=own) == []
    plain = policy({"content": {"offers": False}})
    assert content("<p>Rifles and ammo, no licence check</p>", pol=plain) == []
    assert content("<p>Rifles and ammo, no licence check</p>") != []


def test_list_files_may_carry_subjects_and_offers(tmp_path: Path) -> None:
    write(tmp_path, "lists/eo.toml", 'language = "eo"\n[categories.weapons]\nsubjects = ["pafilo*"]\n'
          '[offers]\nevasion = ["sen permeso"]\n')
    write(tmp_path, "policy.toml", '[checks.content]\nlists = ["lists/eo.toml"]\n')
    pol = load_policy(tmp_path / "policy.toml")
    assert content("<p>Pafiloj sen permeso!</p>", pol=pol) == ["category weapons (eo list): 'pafiloj' offered with 'sen permeso'"]

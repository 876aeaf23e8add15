"""The import structure of proxy/ (docs/architecture.md): no import cycle of more than two
modules, and a pure core (message view, policy, checks, engine, the reply catalogue) that
imports nothing from the shell, counting function-level and TYPE_CHECKING imports too."""

from __future__ import annotations

from tests.support.importgraph import cycles, graph

CORE = ("proxy.message", "proxy.policy", "proxy.replies")
# What the core may import besides itself: the TOML/validation helper every layer uses.
CORE_MAY_USE = ("proxy.tomlfile",)


def test_no_import_cycle_of_more_than_two_modules() -> None:
    assert [c for c in cycles(graph()) if len(c) > 2] == []


def test_the_core_imports_nothing_from_the_shell() -> None:
    g = graph()
    wrong = {
        m: sorted(t for t in targets if not t.startswith(CORE) and t not in CORE_MAY_USE and t != "proxy")
        for m, targets in g.items() if m.startswith(CORE)
    }
    assert {m: t for m, t in wrong.items() if t} == {}


def test_the_scan_sees_function_level_and_type_checking_imports() -> None:
    """The guard itself: an import inside a function and one under TYPE_CHECKING both count."""
    g = graph()
    assert "proxy.message.html" in g["proxy.message.mime"]  # imported inside Message's methods
    assert "proxy.smtp.server" in g["proxy.smtp.handler"]  # imported under TYPE_CHECKING


def test_no_two_classes_in_proxy_share_a_name() -> None:
    """A name says which class it is (docs/architecture.md): no `Quarantine` configuration
    section beside the `Quarantine` store, no three `Outcome`s."""
    import ast
    from collections import defaultdict

    from tests.conftest import ROOT

    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "proxy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}

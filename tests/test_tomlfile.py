"""proxy/tomlfile.py: where keys are in a TOML file, and errors in plain words."""

from __future__ import annotations

import subprocess
import tomllib

from proxy.tomlfile import key_lines
from tests.conftest import SENDWARDEN

TRICKY = '''\
# a comment with key = "value" and [table]
title = """
not_a_key = 1
[not.a.table]
"""   # the string ends here
"quoted key" = 'x'
a.b.c = 1
arr = [
  1, # comment ]
  2,
]
inline = { x = 1, y = [2, 3] }

[server."alpha.example"]
port = 25

[[fruit]]
name = "apple"
[[fruit.variety]]
name = "red"
[[fruit.variety]]
name = "green"

[[fruit]]
name = "banana"
[fruit.shape]
round = false
lit = \'\'\'
x = 1\'\'\'
last = true
'''


def test_key_lines_follow_the_parsed_document() -> None:
    tomllib.loads(TRICKY)  # it is valid TOML
    lines = key_lines(TRICKY)
    assert lines[("title",)] == 2
    assert ("not_a_key",) not in lines and ("not",) not in lines
    assert lines[("quoted key",)] == 6
    assert lines[("a", "b", "c")] == 7 and lines[("a",)] == 7
    assert lines[("arr",)] == 8
    assert lines[("inline",)] == 12
    assert lines[("server", "alpha.example", "port")] == 15
    assert lines[("fruit", 0, "name")] == 18
    assert lines[("fruit", 0, "variety", 0, "name")] == 20
    assert lines[("fruit", 0, "variety", 1, "name")] == 22
    assert lines[("fruit", 1, "name")] == 25
    assert lines[("fruit", 1, "shape", "round")] == 27
    assert ("x",) not in lines
    assert lines[("fruit", 1, "shape", "last")] == 30


def test_policy_check_reports_every_error_with_its_line_and_exits_78(tmp_path, cli_env) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\nmode = "loud"\n\n[checks.unsubscribe]\nenabled = "off"\n[checks.subjekt]\nenabled = true\n')
    out = subprocess.run([*SENDWARDEN, "policy", "check", str(policy)], env=cli_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 78 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f'{policy}:2: policy.mode: expected "enforce" or "monitor"',
        f"{policy}:5: checks.unsubscribe.enabled: expected true or false (without quotes)",
        f"{policy}:6: checks.subjekt: unknown check family; did you mean 'subject'?",
    ]

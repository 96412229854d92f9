"""Tests of webstack.django.env_file: quoting against systemd's parser rules, validation, and the module on tmp_path.

The owner and group are the current user's, so the tests run as root or not.
"""

import grp
import importlib.util
import json
import os
import pwd
import random
import stat
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

MODULE_PATH = Path(__file__).resolve().parents[4] / "plugins" / "modules" / "env_file.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("env_file", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ef = _load_module()

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name

# Values that break naive quoting. Each must come back exactly.
NASTY = {
    "EMPTY": "",
    "SPACE": " ",
    "SPACES_AROUND": "  leading and trailing  ",
    "TABS_AROUND": "\tx\t",
    "SINGLE_QUOTE": "it's",
    "ONLY_SINGLE_QUOTE": "'",
    "SINGLE_QUOTES_AROUND": "'quoted'",
    "DOUBLE_QUOTE": 'say "hi"',
    "ONLY_DOUBLE_QUOTE": '"',
    "BOTH_QUOTES": """it's "both" '""",
    "DOLLAR": "$HOME ${HOME} $(id) $$ $",
    "DOLLAR_AND_QUOTE": "it's $HOME",
    "HASH": "# not a comment",
    "HASH_INSIDE": "a#b ;c",
    "SEMICOLON": ";",
    "EQUALS": "a=b==c=",
    "BACKSLASH": "\\",
    "BACKSLASHES": "C:\\path\\to\\n\\t\\\\",
    "BACKSLASH_AND_QUOTE": "it\\'s \\\" \\$ \\` \\\\",
    "TRAILING_BACKSLASH": "ends with \\",
    "TRAILING_BACKSLASH_QUOTE": "it's \\",
    "BACKSLASH_NEWLINE": "line\\\nnext",
    "BACKSLASH_NEWLINE_QUOTE": "it's\\\nnext",
    "BACKTICK": "`id` ``",
    "BACKTICK_QUOTE": "it's `id`",
    "NEWLINE": "first\nsecond",
    "NEWLINES_AROUND": "\nmiddle\n",
    "NEWLINE_QUOTE": "it's\nline two\n",
    "CRLF": "a\r\nb\r",
    "CR_QUOTE": "it's\r",
    "CONTROL": "\x01\x07\x08\x1b[31m\x7f\x1f",
    "UNICODE": "päßwörd ✓ 日本語 🐍 \u00a0\u200b\u2028",
    "UNICODE_QUOTE": "l'été 🐍",
    "SECRET_KEY_LIKE": "django-insecure-(#k!a'b\"c$d`e\\f=g&h*i^j%k@l+m~n",
    "URL": "postgres://u:p%40ss'w\"d@db:5432/x?sslmode=require&a=b#frag",
    "JSON": '{"a": [1, "two", {"three": "it\'s"}], "b": "$x"}',
    "ONLY_WHITESPACE": " \t\n\r ",
    "LOOKS_LIKE_ASSIGNMENT": "\nOTHER=injected\n",
    "LOOKS_LIKE_COMMENT_LINE": "x\n# comment\n; comment",
    "QUOTE_NEWLINE_ASSIGNMENT": "'\nINJECTED='yes",
    "DQUOTE_NEWLINE_ASSIGNMENT": '"\nINJECTED="yes',
}


def random_value(rng):
    """A random string built from characters that matter to the parser, ASCII and other code points."""
    specials = "'\"\\$`#;= \t\n\r{}()!*?~&|<>%"
    length = rng.randint(0, 40)
    chars = []
    for _position in range(length):
        pick = rng.random()
        if pick < 0.5:
            chars.append(rng.choice(specials))
        elif pick < 0.8:
            chars.append(chr(rng.randint(0x20, 0x7E)))
        elif pick < 0.9:
            chars.append(chr(rng.randint(1, 0x1F)))
        else:
            while True:
                code_point = rng.randint(0x80, 0x10FFFF)
                if not (0xD800 <= code_point <= 0xDFFF or ef.is_noncharacter(code_point)):
                    break
            chars.append(chr(code_point))
    return "".join(chars)


def run_main(capsys, args, check_mode=False, diff=False):
    args = dict(args)
    args["_ansible_check_mode"] = check_mode
    args["_ansible_diff"] = diff
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            ef.main()
    return info.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def module_runs_on_a_managed_host(monkeypatch):
    """Once any test of the session imports controller code (a filter plugin, ansible.errors), ansible-core marks the
    process as the controller and module warnings go to the display instead of the result; the module runs on a
    managed host."""
    from ansible.module_utils import _internal

    monkeypatch.setattr(_internal, "is_controller", False)


@pytest.fixture(autouse=True)
def directory_owner_is_current_user(monkeypatch):
    """The module gives the parent directory to root; as another user it can only give it to that user."""
    monkeypatch.setattr(ef, "DIRECTORY_OWNER", USER)


@pytest.fixture
def target(tmp_path):
    return tmp_path / "app" / "app.env"


def base_args(path, values, **kwargs):
    args = dict(path=str(path), values=values, owner=USER, group=GROUP)
    args.update(kwargs)
    return args


def warnings(result):
    """Warning texts of a result (ansible-core 2.19 returns structured warnings)."""
    return [json.dumps(w) for w in result.get("warnings", [])]


def assert_no_value_in(text, values):
    # Ansible replaces no_log values with ******** in the output: seeing it would mean the module tried to
    # output a value.
    assert "********" not in text
    for value in values:
        if len(value) >= 4:
            assert value not in text


# --- quoting and rendering ---------------------------------------------------------------------------------------

def test_render_is_sorted_with_header_and_exact_bytes():
    content = ef.render({"B": "two words", "A": "it's", "C": ""})
    assert content == (
        b"# Managed by Ansible (webstack.django.env_file). Do not edit: changes will be overwritten.\n"
        b"A=\"it's\"\n"
        b"B='two words'\n"
        b"C=''\n"
    )


@pytest.mark.parametrize("text, quoted", [
    ("", "''"),
    ("plain", "'plain'"),
    ("a \"b\" $c `d` \\e", "'a \"b\" $c `d` \\e'"),
    ("it's", '"it\'s"'),
    ("it's \"x\" $y `z` \\w", '"it\'s \\"x\\" \\$y \\`z\\` \\\\w"'),
    ("it's\nnext", '"it\'s\nnext"'),
])
def test_quote_value(text, quoted):
    assert ef.quote_value(text) == quoted


def test_header_is_a_comment_that_does_not_continue():
    assert ef.HEADER.startswith("#")
    assert not ef.HEADER.endswith("\\")
    assert "\n" not in ef.HEADER


@pytest.mark.parametrize("key", sorted(NASTY))
def test_round_trip_nasty_value(key):
    value = NASTY[key]
    assert ef.parse_env(ef.render({key: value})) == {key: value}


def test_round_trip_all_nasty_values_in_one_file():
    assert ef.parse_env(ef.render(NASTY)) == NASTY


def test_round_trip_random_values():
    rng = random.Random(20240611)
    for batch in range(200):
        values = {"K%d" % i: random_value(rng) for i in range(10)}
        assert ef.parse_env(ef.render(values)) == values, "batch %d" % batch


def test_every_backslash_written_in_double_quotes_is_followed_by_an_escapable_character():
    rng = random.Random(7)
    for _round in range(2000):
        value = "'" + random_value(rng)
        quoted = ef.quote_value(value)
        assert quoted[0] == quoted[-1] == '"'
        body = quoted[1:-1]
        i = 0
        while i < len(body):
            if body[i] == "\\":
                assert body[i + 1] in '"\\`$'
                i += 2
                continue
            assert body[i] not in '"`$'
            i += 1


# --- the parser follows systemd's rules (cases written from src/basic/env-file.c) --------------------------------

@pytest.mark.parametrize("content, expected", [
    ("A=b\n", {"A": "b"}),
    ("A=b", {"A": "b"}),
    ("  A  =   b c   \n", {"A": "b c"}),
    ("A=\n", {"A": ""}),
    ("A=", {"A": ""}),
    ("A=''\n", {"A": ""}),
    ("A='x\ny'\n", {"A": "x\ny"}),
    ("A='\\n $x \"'\n", {"A": "\\n $x \""}),
    ('A="x\ny"\n', {"A": "x\ny"}),
    ('A="a\\"b\\\\c\\`d\\$e"\n', {"A": 'a"b\\c`d$e'}),
    ('A="a\\nb\\\'c"\n', {"A": "a\\nb\\'c"}),
    ('A="a\\\nb"\n', {"A": "ab"}),
    ("A=a\\\nb\n", {"A": "ab"}),
    ("A=a\\ \n", {"A": "a "}),
    ("A=a\\nb\n", {"A": "anb"}),
    ("A='x'y\n", {"A": "xy"}),
    ("A='x' 'y'\n", {"A": "xy"}),
    ("A=x'y z'\n", {"A": "x'y z'"}),
    ("A=x # not a comment\n", {"A": "x # not a comment"}),
    ("# A=1\n; B=2\nC=3\n", {"C": "3"}),
    ("A=1\nA=2\n", {"A": "2"}),
    ("A=a\rB=b\r\n", {"A": "a", "B": "b"}),
    ("no equals sign\nA=1\n", {"A": "1"}),
    ("export A=1\n9B=2\nC-D=3\n", {}),
    ("A=1\0B=2\n", {"A": "1"}),
    ("# comment \\\nA=1\n", {"A": "1"}),
    ("A='unterminated\nB=2\n", {"A": "unterminated\nB=2\n"}),
])
def test_parse_env_follows_systemd(content, expected):
    assert ef.parse_env(content.encode("utf-8")) == expected


@pytest.mark.parametrize("content", [b"A='\xff'\n", b"A=\xed\xa0\x80\n", "A='\ufffe'\n".encode("utf-8")])
def test_parse_env_refuses_what_systemd_refuses(content):
    with pytest.raises(ef.EnvFileParseError):
        ef.parse_env(content)


def test_parse_env_ignores_invalid_utf8_in_comments():
    assert ef.parse_env(b"# caf\xe9\nA=1\n") == {"A": "1"}


# --- validation --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "É", "A=B", "A\nB", "export A"])
def test_bad_key_is_named_and_value_is_not(key):
    with pytest.raises(ef.EnvFileError) as info:
        ef.normalize_values({key: "s3cr3t-value"})
    assert repr(key) in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


@pytest.mark.parametrize("key", ["A\n", "A\r", "A\r\n", "\nA", "A\n\n", "LD_PRELOAD\n", "A\nLD_PRELOAD"])
def test_key_with_a_newline_anywhere_is_refused(key):
    # A pattern ending in $ accepts "A\n": the key would end its line and the value become a line of its own.
    assert ef.key_problem(key)
    with pytest.raises(ef.EnvFileError) as info:
        ef.normalize_values({key: "s3cr3t-value"})
    assert repr(key) in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


# Values written to break out of their quoting and add a variable of their own.
INJECTIONS = [
    'x"\nLD_PRELOAD=/tmp/x.so',
    "x'\nLD_PRELOAD=/tmp/x.so",
    "x\nLD_PRELOAD=/tmp/x.so",
    "x\rLD_PRELOAD=/tmp/x.so",
    "x\r\nLD_PRELOAD=/tmp/x.so\r\n",
    "x\\\nLD_PRELOAD=/tmp/x.so",
    "x\\'\nLD_PRELOAD=/tmp/x.so",
    "'\"\nLD_PRELOAD='/tmp/x.so'\n",
    "it's\"\nLD_PRELOAD=\"/tmp/x.so",
    "x\\\"\nLD_PRELOAD=/tmp/x.so #'",
    "\nLD_PRELOAD=/tmp/x.so\n#",
    "x'$(touch /tmp/pwned)'\nLD_PRELOAD=`id`",
]


@pytest.mark.parametrize("value", INJECTIONS, ids=repr)
def test_a_value_never_breaks_out_of_its_quoting(value):
    content = ef.render({"A": value, "Z": "last"})
    entries = ef.parse_env_entries(content)
    # Exactly the two assignments written, in order, each with its exact value: no line of the value became
    # an assignment (not even one systemd would drop for its name).
    assert entries == [("A", value), ("Z", "last")]
    assert ef.parse_env(content) == {"A": value, "Z": "last"}


def test_non_string_key_is_refused():
    with pytest.raises(ef.EnvFileError, match="not a string"):
        ef.normalize_values({1: "s3cr3t-value"})


@pytest.mark.parametrize("value, fragment", [
    (None, "is null"),
    ({"a": "s3cr3t-value"}, "is a mapping"),
    (["s3cr3t-value"], "is a list"),
    ("s3cr3t-value\0", "NUL"),
    ("s3cr3t-value\ufffe", "noncharacter"),
    ("s3cr3t-value\U0010ffff", "noncharacter"),
    ("s3cr3t-value\ufdd0", "noncharacter"),
    ("s3cr3t-value\udcff", "surrogate"),
])
def test_bad_value_is_named_by_key_only(value, fragment):
    with pytest.raises(ef.EnvFileError) as info:
        ef.normalize_values({"GOOD": "fine", "MY_KEY": value})
    message = str(info.value)
    assert "MY_KEY" in message
    assert fragment in message
    assert "s3cr3t" not in message
    assert "GOOD" not in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(ef.EnvFileError) as info:
        ef.normalize_values({"1BAD": "x", "NULL": None, "LIST": [1]})
    message = str(info.value)
    assert "'1BAD'" in message and "NULL" in message and "LIST" in message


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (0, "0"), (42, "42"), (-7, "-7"), (1.5, "1.5"), ("x", "x"),
])
def test_scalar_values(value, text):
    assert ef.normalize_values({"K": value}) == {"K": text}


@pytest.mark.parametrize("value, mode", [
    ("0640", 0o640), ("640", 0o640), ("0o600", 0o600), ("0750", 0o750), ("2750", 0o2750), (0o640, 0o640),
    ("0", 0),
])
def test_parse_mode(value, mode):
    assert ef.parse_mode(value, "mode") == mode


@pytest.mark.parametrize("value", ["u=rw,g=r", "0888", "99999", True, 0o17777, -1, None])
def test_parse_mode_refuses(value):
    with pytest.raises(ef.EnvFileError, match="mode"):
        ef.parse_mode(value, "mode")


# --- diff --------------------------------------------------------------------------------------------------------

def test_compare_marks_changed_added_removed():
    changed, before, after = ef.compare({"A": "1", "B": "old", "GONE": "x"}, {"A": "1", "B": "new", "NEW": "y"})
    assert changed == ["B", "GONE", "NEW"]
    assert before == "A=<hidden>\nB=<old value hidden>\nGONE=<old value hidden>\n"
    assert after == "A=<hidden>\nB=<new value hidden>\nNEW=<new value hidden>\n"


def test_compare_unparseable_old_counts_every_key_as_changed():
    changed, before, after = ef.compare(None, {"B": "2", "A": "1"})
    assert changed == ["A", "B"]
    assert before == ef.UNPARSEABLE_LINE + "\n"
    assert after == "A=<new value hidden>\nB=<new value hidden>\n"


# --- the module --------------------------------------------------------------------------------------------------

def test_creates_file_and_directory_with_modes(capsys, target):
    code, result = run_main(capsys, base_args(target, NASTY))
    assert code == 0, result
    assert result["changed"] is True
    assert result["path"] == str(target)
    assert result["keys"] == sorted(NASTY)
    assert result["changed_keys"] == sorted(NASTY)
    assert target.read_bytes() == ef.render(NASTY)
    assert ef.parse_env(target.read_bytes()) == NASTY
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    dst = target.parent.stat()
    assert stat.S_IMODE(dst.st_mode) == 0o750
    assert (dst.st_uid, dst.st_gid) == (os.getuid(), os.getgid())
    assert os.listdir(target.parent) == ["app.env"]


def test_second_run_is_idempotent(capsys, target):
    run_main(capsys, base_args(target, NASTY))
    inode = target.stat().st_ino
    code, result = run_main(capsys, base_args(target, NASTY), diff=True)
    assert code == 0
    assert result["changed"] is False
    assert result["changed_keys"] == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert target.stat().st_ino == inode


def test_values_given_as_numbers_and_booleans_are_idempotent(capsys, target):
    values = {"DEBUG": False, "WORKERS": 4, "RATIO": 0.25, "NAME": "shop"}
    run_main(capsys, base_args(target, values))
    assert ef.parse_env(target.read_bytes()) == {"DEBUG": "false", "WORKERS": "4", "RATIO": "0.25", "NAME": "shop"}
    code, result = run_main(capsys, base_args(target, values))
    assert result["changed"] is False


def test_changed_value_added_and_removed_keys(capsys, target):
    run_main(capsys, base_args(target, {"KEEP": "same-value-1", "CHANGE": "old-value-22", "DROP": "gone-value-333"}))
    new = {"KEEP": "same-value-1", "CHANGE": "new-value-4444", "ADD": "added-value-55555"}
    code, result = run_main(capsys, base_args(target, new), diff=True)
    assert result["changed"] is True
    assert result["changed_keys"] == ["ADD", "CHANGE", "DROP"]
    assert result["keys"] == ["ADD", "CHANGE", "KEEP"]
    assert result["diff"] == {
        "before_header": str(target),
        "after_header": str(target),
        "before": "CHANGE=<old value hidden>\nDROP=<old value hidden>\nKEEP=<hidden>\n",
        "after": "ADD=<new value hidden>\nCHANGE=<new value hidden>\nKEEP=<hidden>\n",
    }
    assert ef.parse_env(target.read_bytes()) == new


def test_output_and_diff_never_contain_values(capsys, target):
    values = {"DJANGO_SECRET_KEY": "sekrit-django-key-'$`\\\"", "DATABASE_URL": "postgres://u:sekrit-pw@db/x"}
    code, result = run_main(capsys, base_args(target, values), diff=True)
    assert code == 0
    assert_no_value_in(json.dumps(result), values.values())
    assert result["diff"]["after"] == "DATABASE_URL=<new value hidden>\nDJANGO_SECRET_KEY=<new value hidden>\n"
    changed = dict(values, DJANGO_SECRET_KEY="another-sekrit-value")
    code, result = run_main(capsys, base_args(target, changed), diff=True)
    assert_no_value_in(json.dumps(result), list(values.values()) + list(changed.values()))
    assert result["diff"]["before"] != result["diff"]["after"]


def test_failures_never_contain_values(capsys, target):
    values = {"GOOD": "sekrit-good-value", "bad-key": "sekrit-bad-key-value", "NULLISH": None,
              "NUL": "sekrit-with-nul\0"}
    code, result = run_main(capsys, base_args(target, values))
    assert code == 1
    assert "'bad-key'" in result["msg"] and "NULLISH" in result["msg"] and "NUL" in result["msg"]
    assert_no_value_in(json.dumps(result), ["sekrit-good-value", "sekrit-bad-key-value", "sekrit-with-nul"])
    assert not target.exists()


@pytest.mark.parametrize("key", ["A\n", "LD_PRELOAD\n", "A\r"], ids=repr)
def test_module_refuses_a_key_with_a_newline_and_writes_nothing(capsys, target, key):
    code, result = run_main(capsys, base_args(target, {key: "/tmp/x.so-sekrit", "GOOD": "fine-value"}))
    assert code == 1
    assert "invalid variable name" in result["msg"]
    assert "sekrit" not in json.dumps(result)
    assert not target.exists()


def test_module_writes_an_injection_attempt_as_one_value(capsys, target):
    value = 'x"\nLD_PRELOAD=/tmp/x.so'
    code, result = run_main(capsys, base_args(target, {"A": value}))
    assert code == 0 and result["keys"] == ["A"]
    assert ef.parse_env_entries(target.read_bytes()) == [("A", value)]


def test_check_mode_writes_nothing_and_reports_diff(capsys, target):
    code, result = run_main(capsys, base_args(target, {"A": "value-one"}), check_mode=True, diff=True)
    assert code == 0
    assert result["changed"] is True
    assert result["changed_keys"] == ["A"]
    assert result["diff"]["before"] == ""
    assert result["diff"]["after"] == "A=<new value hidden>\n"
    assert not target.parent.exists()

    run_main(capsys, base_args(target, {"A": "value-one"}))
    before = target.read_bytes()
    code, result = run_main(capsys, base_args(target, {"A": "value-two"}), check_mode=True)
    assert result["changed"] is True
    assert result["changed_keys"] == ["A"]
    assert target.read_bytes() == before
    code, result = run_main(capsys, base_args(target, {"A": "value-one"}), check_mode=True)
    assert result["changed"] is False


def test_mode_change_only_rewrites_without_changed_keys(capsys, target):
    run_main(capsys, base_args(target, {"A": "value-one"}))
    target.chmod(0o644)
    code, result = run_main(capsys, base_args(target, {"A": "value-one"}), diff=True)
    assert result["changed"] is True
    assert result["changed_keys"] == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    code, result = run_main(capsys, base_args(target, {"A": "value-one"}))
    assert result["changed"] is False


def test_custom_modes_and_existing_directory_is_enforced(capsys, target):
    target.parent.mkdir(mode=0o755)
    os.chmod(target.parent, 0o777)
    code, result = run_main(capsys, base_args(target, {"A": "1"}, mode="0600", directory_mode="0700"))
    assert result["changed"] is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    code, result = run_main(capsys, base_args(target, {"A": "1"}, mode="0600", directory_mode="0700"))
    assert result["changed"] is False
    os.chmod(target.parent, 0o755)
    code, result = run_main(capsys, base_args(target, {"A": "1"}, mode="0600", directory_mode="0700"))
    assert result["changed"] is True
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_missing_parents_are_created(capsys, tmp_path):
    target = tmp_path / "a" / "b" / "app.env"
    code, result = run_main(capsys, base_args(target, {"A": "1"}))
    assert code == 0, result
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o750


def test_world_readable_mode_warns(capsys, target):
    code, result = run_main(capsys, base_args(target, {"A": "1"}, mode="0644"))
    assert code == 0
    assert any("every user" in w for w in warnings(result))
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_unparseable_existing_file_counts_every_key_as_changed(capsys, target):
    target.parent.mkdir()
    target.write_bytes(b"A='\xff\xfe'\n")
    code, result = run_main(capsys, base_args(target, {"A": "1", "B": "2"}), diff=True)
    assert result["changed"] is True
    assert result["changed_keys"] == ["A", "B"]
    assert result["diff"]["before"] == ef.UNPARSEABLE_LINE + "\n"


def test_foreign_file_with_same_values_changes_bytes_only(capsys, target):
    target.parent.mkdir()
    target.write_bytes(b"# written by hand\nB=two\nA=\"one\"\n")
    code, result = run_main(capsys, base_args(target, {"A": "one", "B": "two"}), diff=True)
    assert result["changed"] is True
    assert result["changed_keys"] == []
    assert target.read_bytes() == ef.render({"A": "one", "B": "two"})


def test_refuses_shared_system_directory(capsys):
    code, result = run_main(capsys, base_args("/etc/app.env", {"A": "1"}), check_mode=True)
    assert code == 1
    assert "shared system directory" in result["msg"]


def test_refuses_path_that_is_not_a_regular_file(capsys, target):
    target.mkdir(parents=True)
    code, result = run_main(capsys, base_args(target, {"A": "1"}))
    assert code == 1
    assert "not a regular file" in result["msg"]


def test_unknown_group_fails_but_only_warns_in_check_mode(capsys, target):
    args = base_args(target, {"A": "1"}, group="no-such-group-xyz")
    code, result = run_main(capsys, args)
    assert code == 1
    assert result["msg"] == "no such group: no-such-group-xyz"
    code, result = run_main(capsys, args, check_mode=True)
    assert code == 0
    assert result["changed"] is True
    assert any("no such group" in w for w in warnings(result))


def test_required_options_with_state_present(capsys, target):
    code, result = run_main(capsys, {"path": str(target), "values": {"A": "1"}})
    assert code == 1
    assert "group" in result["msg"]


def test_state_absent(capsys, target):
    run_main(capsys, base_args(target, {"A": "value-one", "B": "value-two"}))
    code, result = run_main(capsys, {"path": str(target), "state": "absent"}, check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["changed_keys"] == ["A", "B"]
    assert result["diff"]["before"] == "A=<old value hidden>\nB=<old value hidden>\n"
    assert result["diff"]["after"] == ""
    assert target.exists()
    code, result = run_main(capsys, {"path": str(target), "state": "absent"})
    assert result["changed"] is True
    assert result["keys"] == []
    assert not target.exists()
    assert target.parent.is_dir()
    code, result = run_main(capsys, {"path": str(target), "state": "absent"})
    assert result["changed"] is False


# --- atomic write ------------------------------------------------------------------------------------------------

def test_temp_file_is_private_until_it_has_its_final_attributes(capsys, target, monkeypatch):
    """The temporary file is created 0600 and O_EXCL and has its final owner, group and mode before the rename."""
    opened = []
    renamed = []
    real_open, real_replace, real_fchmod = os.open, os.replace, os.fchmod

    def spy_open(path, flags, mode=0o777, *args, **kwargs):
        if str(path).endswith(".tmp"):
            fd = real_open(path, flags, mode, *args, **kwargs)
            opened.append((str(path), flags, mode, stat.S_IMODE(os.fstat(fd).st_mode)))
            return fd
        return real_open(path, flags, mode, *args, **kwargs)

    def spy_fchmod(fd, mode):
        st = os.fstat(fd)
        # Before the final mode is set, owner and group are already final and nobody else can read the file.
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0
        return real_fchmod(fd, mode)

    def spy_replace(src, dst):
        st = os.stat(src)
        renamed.append((str(src), str(dst), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, Path(src).read_bytes()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fchmod", spy_fchmod)
    monkeypatch.setattr(os, "replace", spy_replace)
    code, result = run_main(capsys, base_args(target, NASTY))
    assert code == 0, result

    assert len(opened) == 1
    tmp, flags, mode, created_mode = opened[0]
    assert os.path.dirname(tmp) == str(target.parent)
    assert os.path.basename(tmp).startswith(".app.env.")
    assert mode == 0o600
    assert created_mode & 0o077 == 0
    assert flags & os.O_EXCL and flags & os.O_CREAT and flags & os.O_NOFOLLOW
    assert renamed == [(tmp, str(target), 0o640, os.getuid(), os.getgid(), ef.render(NASTY))]
    assert not os.path.exists(tmp)


def test_failed_rename_keeps_old_file_and_removes_temp(capsys, target, monkeypatch):
    run_main(capsys, base_args(target, {"A": "value-one"}))
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    code, result = run_main(capsys, base_args(target, {"A": "value-two"}))
    assert code == 1
    assert "No space left on device" in result["msg"]
    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["app.env"]


# --- output masking ----------------------------------------------------------------------------------------------

def test_short_and_blank_values_do_not_garble_the_output(capsys, target):
    values = {"SPACE": " ", "WORKERS": 4, "FLAG": "1", "DEBUG": False, "SECRET": "long-sekrit-value"}
    code, result = run_main(capsys, base_args(target, values), diff=True)
    assert code == 0, result
    assert result["keys"] == ["DEBUG", "FLAG", "SECRET", "SPACE", "WORKERS"]
    assert result["diff"]["after"].startswith("DEBUG=<new value hidden>\n")
    assert result["path"] == str(target)
    assert result["invocation"]["module_args"]["values"] == dict.fromkeys(values, "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
    assert_no_value_in(json.dumps(result), ["long-sekrit-value"])


def test_short_values_are_still_never_output_in_failures(capsys, target):
    code, result = run_main(capsys, base_args(target, {"X": "ab", "BAD": None}))
    assert code == 1
    assert result["msg"] == "value of BAD is null; give a string, a number or a boolean"
    assert result["invocation"]["module_args"]["values"] == {"X": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                                                             "BAD": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}


def test_long_values_stay_masked(capsys, target):
    """Ansible's masking stays on for real secrets: a value that appears in the output is replaced."""
    target.parent.mkdir()
    secret_dir = target.parent / "long-sekrit-value"
    code, result = run_main(capsys, base_args(secret_dir / "app.env", {"A": "long-sekrit-value"}))
    assert code == 0
    assert "long-sekrit-value" not in json.dumps(result)
    assert "********" in result["path"]


@pytest.mark.parametrize("values, texts", [
    ({"A": " ", "B": "1", "C": 42, "D": 0.5, "E": True, "F": "abcd", "G": "  ab  ", "H": None}, {" ", "1", "42", "0.5", "  ab  "}),
    ({"A": "long enough"}, set()),
    (None, set()),
])
def test_unmasked_texts(values, texts):
    assert ef.unmasked_texts(values) == texts

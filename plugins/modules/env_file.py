#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: env_file
short_description: Write a systemd EnvironmentFile with secrets atomically, without showing the values
version_added: 0.1.0
description:
  - Writes the file a systemd unit reads with C(EnvironmentFile=), for example the secrets of a Django application
    (C(DJANGO_SECRET_KEY), C(DATABASE_URL), ...), or removes it with O(state=absent).
  - Every value reaches the process exactly as given, byte for byte, including spaces, quotes, C($), C(#), C(=),
    backslashes, backticks, leading and trailing whitespace, newlines and non-ASCII characters. See the notes for
    how values are quoted.
  - The file is written atomically. The new content goes to a temporary file in the same directory that is created
    readable by its owner only, synced to disk and given its final owner, group and mode before it is renamed over
    O(path). The secrets are never readable by anyone else, not even for an instant, and a unit that starts
    meanwhile reads either the old or the new file, never a partial one.
  - Keys are written in sorted order after a comment line saying that the file is managed by Ansible, so the same
    O(values) always give the same bytes. The module compares those bytes, the owner, the group and the mode with
    the existing file and only replaces it when something differs.
  - The parent directory is created if it is missing (with missing parents above it, like C(mkdir -p)). The parent
    directory, new or existing, is given owner C(root), group O(group) and mode O(directory_mode).
  - Values are never returned or shown, neither in the result, in the diff nor in error messages. The diff lists
    one line per key name and marks which values changed.
author:
  - webstack.django maintainers (!UNKNOWN)
options:
  path:
    description:
      - Path of the environment file, for example C(/etc/shop/shop.env).
      - Its parent directory should be dedicated to the application. The module refuses to change the owner, group
        or mode of shared system directories such as C(/etc), C(/etc/default) or C(/run).
    type: path
    required: true
  values:
    description:
      - Variables to write, as a mapping of names to values. The file holds exactly these variables.
      - Names must be letters, digits and C(_), not starting with a digit; the whole name must match
        C([A-Za-z_][A-Za-z0-9_]*), so a name with a trailing newline (V(A\\n)) is refused.
      - Values may be strings, integers or floats (written as their text) or booleans (written as C(true) or
        C(false)). V(null), lists and mappings are refused.
      - Values must not contain NUL characters or Unicode noncharacters (U+FDD0 to U+FDEF, U+FFFE, U+FFFF and the
        last two code points of every plane), which systemd refuses.
      - Values vaulted with C(ansible-vault) work as is, see the notes.
      - Required with O(state=present).
    type: dict
  owner:
    description:
      - User that owns the file (name or numeric id).
    type: str
    default: root
  group:
    description:
      - Group of the file and of its parent directory (name or numeric id), usually the group of the service user
        when the service reads the file itself, or C(root) when only systemd reads it.
      - Required with O(state=present).
    type: str
  mode:
    description:
      - Permissions of the file, as an octal string such as V('0640'). An integer is taken as the numeric mode, so
        always quote octal modes in YAML.
      - A warning is given when the mode lets other users read or change the file.
    type: raw
    default: '0640'
  directory_mode:
    description:
      - Permissions of the parent directory, as an octal string or an integer like O(mode).
    type: raw
    default: '0750'
  state:
    description:
      - V(present) writes the file, V(absent) removes it. The parent directory is left alone with V(absent).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change, including the diff, without writing anything.
  diff_mode:
    support: full
    details: The diff shows one line per key name with the values hidden; changed values are marked.
  platform:
    platforms: posix
notes:
  - "Quoting. The file follows the syntax of systemd's environment file parser. A value without a single quote is
    written between single quotes, inside which systemd takes every character literally, newlines included
    (C(KEY='value')). A value with a single quote is written between double quotes with a backslash before every
    C(\"), C(\\), C($) and backtick; inside double quotes systemd removes exactly these backslashes and keeps every
    other character, newlines included. The empty value is written as C(KEY='')."
  - systemd does not expand variables or run command substitutions found in the file, so C($HOME) or a backtick
    command in a value stays as it is. Shell-style C(export) lines are not written.
  - "Ansible Vault: a value can be a vaulted string (C(!vault) in YAML) or a variable from a vaulted file. Ansible
    decrypts it on the controller before the module runs, and the module writes the plain value."
  - Values are never in the module's output. As O(values) is C(no_log), Ansible also replaces every occurrence of a
    value's text anywhere in the output with C(********) as a safety net. Values shorter than 4 characters or made
    of whitespace only are left out of that masking, as they would garble key names, paths and messages (a value
    C(4) would mask every digit 4) while hiding nothing; the module still never outputs them, and the
    C(invocation) in the result shows every value as C(VALUE_SPECIFIED_IN_NO_LOG_PARAMETER).
  - With O(state=present) the result and diff compare the values in the existing file, read with a parser that
    follows systemd's rules. An existing file that systemd could not read (for example invalid UTF-8) counts as
    having every key changed.
  - The module needs to run as root (C(become=true)) to give the file to another owner or group.
seealso:
  - name: systemd.exec(5), EnvironmentFile=
    description: How systemd reads the file.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#EnvironmentFile=
"""

EXAMPLES = r"""
- name: Write the secrets of the shop app, readable by root and the shop group
  webstack.django.env_file:
    path: /etc/shop/shop.env
    owner: root
    group: shop
    mode: '0640'
    values:
      DJANGO_SECRET_KEY: "{{ shop_secret_key }}"
      DATABASE_URL: "postgres://shop:{{ shop_db_password | urlencode }}@db1.internal/shop"
      DJANGO_DEBUG: false
      WEB_CONCURRENCY: 4
  become: true
  diff: true
  notify: Restart shop

- name: A value encrypted inline with ansible-vault (decrypted on the controller before the module runs)
  webstack.django.env_file:
    path: /etc/shop/mail.env
    group: shop
    values:
      EMAIL_HOST_PASSWORD: !vault |
        $ANSIBLE_VAULT;1.1;AES256
        62313365396662343061393464336163383764373764613633653634306231386433626436623361
        6134333665353966363534333632666535333761666131620a663537646436643839616531643561
        63396265333966386166373632626539326166353965363262633030333630313338646335303630
        3438626666666137650a353638643435666633633964366338633066623234616432373231333331
        6564
  become: true

- name: Values from a vaulted vars file (group_vars/shop/vault.yml holds vault_shop_secret_key)
  webstack.django.env_file:
    path: /etc/shop/shop.env
    group: shop
    values:
      DJANGO_SECRET_KEY: "{{ vault_shop_secret_key }}"
  become: true

- name: The unit reads the file
  ansible.builtin.copy:
    dest: /etc/systemd/system/shop.service.d/env.conf
    content: |
      [Service]
      EnvironmentFile=/etc/shop/shop.env
    mode: '0644'
  become: true

- name: Remove the file
  webstack.django.env_file:
    path: /etc/shop/old.env
    state: absent
  become: true
"""

RETURN = r"""
path:
  description: The path of the environment file.
  returned: always
  type: str
  sample: /etc/shop/shop.env
keys:
  description:
    - Sorted names of the variables in the file after the task; empty with O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [DATABASE_URL, DJANGO_DEBUG, DJANGO_SECRET_KEY]
changed_keys:
  description:
    - Sorted names of the variables that were (or, in check mode, would be) added, removed or given another value.
    - With O(state=present), when the existing file cannot be read as an environment file every key of O(values)
      counts as changed.
    - Empty when only the owner, group or mode changed.
  returned: always
  type: list
  elements: str
  sample: [DJANGO_SECRET_KEY]
diff:
  description:
    - With C(--diff), one line per key name, never a value. A key with the same value shows C(KEY=<hidden>) on both
      sides, a changed value shows C(KEY=<old value hidden>) before and C(KEY=<new value hidden>) after, and added
      or removed keys appear on one side only.
  returned: when diff mode is on
  type: dict
  sample:
    before_header: /etc/shop/shop.env
    after_header: /etc/shop/shop.env
    before: "DATABASE_URL=<hidden>\nDJANGO_SECRET_KEY=<old value hidden>\n"
    after: "DATABASE_URL=<hidden>\nDJANGO_SECRET_KEY=<new value hidden>\nWEB_CONCURRENCY=<new value hidden>\n"
"""

import errno
import grp
import os
import pwd
import re
import secrets
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.webstack.django.plugins.module_utils.inputs import ENV_NAME_RE

# Matched against the whole name (fullmatch): "A\n" must never pass, it would end the line the key starts.
KEY_RE = ENV_NAME_RE
HEADER = "# Managed by Ansible (webstack.django.env_file). Do not edit: changes will be overwritten."

# Owner of the parent directory (a module-level name so that unit tests can run as another user).
DIRECTORY_OWNER = "root"

# Shared directories whose owner, group and mode the module must never change.
PROTECTED_DIRECTORIES = frozenset([
    "/", "/bin", "/boot", "/dev", "/etc", "/etc/default", "/etc/sysconfig", "/etc/systemd",
    "/etc/systemd/system", "/etc/systemd/user", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
    "/run/systemd", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local",
    "/usr/local/bin", "/usr/local/etc", "/usr/local/lib", "/usr/sbin", "/usr/share", "/var", "/var/lib",
    "/var/log", "/var/tmp",
])

# Values shorter than this (not counting surrounding whitespace) are left out of Ansible's output masking.
MIN_MASKED_LENGTH = 4

HIDDEN = "<hidden>"
OLD_HIDDEN = "<old value hidden>"
NEW_HIDDEN = "<new value hidden>"
UNPARSEABLE_LINE = "# (the existing file could not be read as an environment file; every key counts as changed)"


class EnvFileError(Exception):
    """A problem with the module's input or the file system; the message never contains a value."""


class EnvFileParseError(Exception):
    """The content is not something systemd would load."""


# --- values ------------------------------------------------------------------------------------------------------

def is_noncharacter(code_point):
    """Whether systemd's UTF-8 validation refuses this code point (unichar_is_valid)."""
    return 0xFDD0 <= code_point <= 0xFDEF or (code_point & 0xFFFE) == 0xFFFE


def value_problem(text):
    """Why systemd could not receive this text as a value, or None. The answer never quotes the text."""
    if "\0" in text:
        return "contains a NUL character"
    for char in text:
        code_point = ord(char)
        if 0xD800 <= code_point <= 0xDFFF:
            return "contains a lone surrogate (not valid UTF-8)"
        if is_noncharacter(code_point):
            return "contains a Unicode noncharacter (U+FDD0..U+FDEF or U+xFFFE/U+xFFFF), which systemd refuses"
    return None


def value_to_text(key, value):
    """The text of one value; raise EnvFileError naming the key (never the value) for a value that is refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = str(value)
    elif value is None:
        raise EnvFileError("value of %s is null; give a string, a number or a boolean" % key)
    else:
        kind = "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, (list, tuple)) else (
            "of type %s" % type(value).__name__)
        raise EnvFileError("value of %s is %s; give a string, a number or a boolean" % (key, kind))
    problem = value_problem(text)
    if problem:
        raise EnvFileError("value of %s %s" % (key, problem))
    return text


def key_problem(key):
    if not isinstance(key, str):
        return "variable name %r is not a string" % (key,)
    if not KEY_RE.fullmatch(key):
        return ("invalid variable name %r: names must be letters, digits and _, not starting with a digit "
                "(the whole name matching %s)" % (key, KEY_RE.pattern))
    return None


def normalize_values(values):
    """Validate every key and value; return {key: text}. Raise EnvFileError listing every problem."""
    if not isinstance(values, dict):
        raise EnvFileError("values must be a mapping of variable names to values")
    problems = []
    texts = {}
    for key in sorted(values, key=str):
        problem = key_problem(key)
        if problem:
            problems.append(problem)
            continue
        try:
            texts[key] = value_to_text(key, values[key])
        except EnvFileError as e:
            problems.append(str(e))
    if problems:
        raise EnvFileError("; ".join(problems))
    return texts


# --- rendering ---------------------------------------------------------------------------------------------------

DOUBLE_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "`": "\\`", "$": "\\$"}


def quote_value(text):
    """Quote text so that systemd's environment file parser yields exactly text.

    The rules, from systemd's src/basic/env-file.c (parse_env_file_internal), the same in systemd 252 and 257:

    * Between single quotes every character up to the next single quote is taken literally: backslashes, double
      quotes, '$', '#', '=', backticks, spaces, tabs, CR and LF. There is no escape for the single quote itself.
    * Between double quotes a backslash followed by one of  "  \\  `  $  gives that character, a backslash followed
      by LF is removed (line continuation), and a backslash followed by any other character is kept with that
      character. Every other character, LF included, is taken literally.
    * Unquoted values are never written: they lose trailing whitespace, end at LF or CR and treat backslash as an
      escape.

    Encoding: a value without a single quote goes between single quotes as it is. A value with a single quote goes
    between double quotes with a backslash before each  "  \\  `  $ ; then every backslash in the output is followed
    by one of these four characters, so the parser removes exactly the backslashes added here and never sees a
    line continuation. The empty value is written as ''. NUL characters cannot be represented (the parser stops at
    the first one) and are refused before quoting.
    """
    if "'" not in text:
        return "'" + text + "'"
    return '"' + "".join(DOUBLE_QUOTE_ESCAPES.get(c, c) for c in text) + '"'


def render(texts):
    """The file content (bytes) for {key: text}, keys sorted."""
    lines = [HEADER]
    for key in sorted(texts):
        lines.append("%s=%s" % (key, quote_value(texts[key])))
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- parsing -----------------------------------------------------------------------------------------------------

_WHITESPACE = " \t\n\r"
_NEWLINE = "\n\r"
_COMMENTS = "#;"
_SHELL_NEED_ESCAPE = '"\\`$'

# Parser states, named after those of systemd's parser.
_PRE_KEY = 0
_KEY = 1
_PRE_VALUE = 2
_VALUE = 3
_VALUE_ESCAPE = 4
_SINGLE_QUOTE_VALUE = 5
_DOUBLE_QUOTE_VALUE = 6
_DOUBLE_QUOTE_VALUE_ESCAPE = 7
_COMMENT = 8
_COMMENT_ESCAPE = 9


def _cut(chars, end):
    return "".join(chars if end is None else chars[:end])


def parse_env_entries(data):
    """Parse environment file content the way systemd reads an EnvironmentFile.

    Returns the (key, value) pairs in file order, as systemd's parser pushes them (before systemd drops names that
    are not valid variable names). Raises EnvFileParseError where systemd would refuse the whole file (a key or
    value that is not valid UTF-8).
    """
    if isinstance(data, bytes):
        nul = data.find(b"\0")
        if nul >= 0:
            data = data[:nul]  # systemd reads the content as a C string
        text = data.decode("utf-8", "surrogateescape")
    else:
        text = data.split("\0", 1)[0]

    entries = []
    state = _PRE_KEY
    key = []
    value = []
    key_ws = None  # index in key where its trailing whitespace starts
    value_ws = None  # index in value where its trailing whitespace starts

    def push(trim_value):
        entries.append((_cut(key, key_ws), _cut(value, value_ws if trim_value else None)))

    for c in text:
        if state == _PRE_KEY:
            if c in _COMMENTS:
                state = _COMMENT
            elif c not in _WHITESPACE:
                state = _KEY
                key_ws = None
                key.append(c)
        elif state == _KEY:
            if c in _NEWLINE:
                state = _PRE_KEY
                key = []
            elif c == "=":
                state = _PRE_VALUE
                value_ws = None
            else:
                if c not in _WHITESPACE:
                    key_ws = None
                elif key_ws is None:
                    key_ws = len(key)
                key.append(c)
        elif state == _PRE_VALUE:
            if c in _NEWLINE:
                state = _PRE_KEY
                push(False)
                key, value = [], []
            elif c == "'":
                state = _SINGLE_QUOTE_VALUE
            elif c == '"':
                state = _DOUBLE_QUOTE_VALUE
            elif c == "\\":
                state = _VALUE_ESCAPE
            elif c not in _WHITESPACE:
                state = _VALUE
                value.append(c)
        elif state == _VALUE:
            if c in _NEWLINE:
                state = _PRE_KEY
                push(True)
                key, value = [], []
            elif c == "\\":
                state = _VALUE_ESCAPE
                value_ws = None
            else:
                if c not in _WHITESPACE:
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value)
                value.append(c)
        elif state == _VALUE_ESCAPE:
            state = _VALUE
            if c not in _NEWLINE:
                value.append(c)
        elif state == _SINGLE_QUOTE_VALUE:
            if c == "'":
                state = _PRE_VALUE
            else:
                value.append(c)
        elif state == _DOUBLE_QUOTE_VALUE:
            if c == '"':
                state = _PRE_VALUE
            elif c == "\\":
                state = _DOUBLE_QUOTE_VALUE_ESCAPE
            else:
                value.append(c)
        elif state == _DOUBLE_QUOTE_VALUE_ESCAPE:
            state = _DOUBLE_QUOTE_VALUE
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value.append("\\")
                value.append(c)
        elif state == _COMMENT:
            if c == "\\":
                state = _COMMENT_ESCAPE
            elif c in _NEWLINE:
                state = _PRE_KEY
        elif state == _COMMENT_ESCAPE:
            # systemd >= 254; older versions continue the comment on the next line. This module never writes a
            # comment that ends with a backslash.
            state = _PRE_KEY if c in _NEWLINE else _COMMENT

    if state in (_PRE_VALUE, _VALUE, _VALUE_ESCAPE, _SINGLE_QUOTE_VALUE, _DOUBLE_QUOTE_VALUE,
                 _DOUBLE_QUOTE_VALUE_ESCAPE):
        push(state == _VALUE)

    for k, v in entries:
        for part in (k, v):
            for char in part:
                code_point = ord(char)
                if 0xD800 <= code_point <= 0xDFFF or is_noncharacter(code_point):
                    raise EnvFileParseError("invalid UTF-8")
    return entries


def parse_env(data):
    """The environment systemd would build from this content: {key: value}, later assignments winning and names
    that are not valid variable names dropped. Raises EnvFileParseError like parse_env_entries."""
    result = {}
    for key, value in parse_env_entries(data):
        if KEY_RE.fullmatch(key):
            result[key] = value
    return result


# --- diff --------------------------------------------------------------------------------------------------------

def compare(old, new):
    """changed_keys and the diff texts for old and new {key: value}; old is None when it could not be parsed.

    The texts contain key names and placeholders only, never a value or anything derived from one.
    """
    before, after, changed = [], [], []
    if old is None:
        before.append(UNPARSEABLE_LINE)
        for key in sorted(new):
            after.append("%s=%s" % (key, NEW_HIDDEN))
            changed.append(key)
    else:
        for key in sorted(set(old) | set(new)):
            if key in old and key in new:
                if old[key] == new[key]:
                    before.append("%s=%s" % (key, HIDDEN))
                    after.append("%s=%s" % (key, HIDDEN))
                    continue
                before.append("%s=%s" % (key, OLD_HIDDEN))
                after.append("%s=%s" % (key, NEW_HIDDEN))
            elif key in old:
                before.append("%s=%s" % (key, OLD_HIDDEN))
            else:
                after.append("%s=%s" % (key, NEW_HIDDEN))
            changed.append(key)

    def text(lines):
        return "".join(line + "\n" for line in lines)

    return changed, text(before), text(after)


# --- file system -------------------------------------------------------------------------------------------------

def parse_mode(value, option):
    """An octal permission string or an integer -> int."""
    if isinstance(value, bool):
        raise EnvFileError("%s must be an octal string such as '0640'" % option)
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0o|0)?[0-7]{1,4}", value.strip()):
        mode = int(value.strip().replace("0o", "", 1) or "0", 8)
    else:
        raise EnvFileError("%s must be an octal string such as '0640', got %r" % (option, value))
    if not 0 <= mode <= 0o7777:
        raise EnvFileError("%s must be between 0 and 07777, got %r" % (option, value))
    return mode


def resolve_user(name):
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise EnvFileError("no such user: %s" % name)


def resolve_group(name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise EnvFileError("no such group: %s" % name)


def read_existing(path):
    """(lstat result, bytes) of the file at path, or (None, None) if there is none."""
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, None
        raise EnvFileError("cannot inspect %s: %s" % (path, e.strerror))
    if not stat.S_ISREG(st.st_mode):
        return st, None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise EnvFileError("cannot read %s: %s" % (path, e.strerror))
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return st, b"".join(chunks)


def attributes_differ(st, uid, gid, mode):
    return st.st_uid != uid or st.st_gid != gid or stat.S_IMODE(st.st_mode) != mode


def fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_directory(directory, uid, gid, mode):
    """Create directory (and missing parents) if needed and give it uid, gid and mode."""
    try:
        st = os.stat(directory)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise EnvFileError("cannot inspect directory %s: %s" % (directory, e.strerror))
        st = None
    try:
        if st is None:
            parent = os.path.dirname(directory)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent)
            # Private until it has its final owner and group.
            os.mkdir(directory, 0o700)
            os.chown(directory, uid, gid)
            os.chmod(directory, mode)
            fsync_directory(parent or "/")
            return
        if st.st_uid != uid or st.st_gid != gid:
            os.chown(directory, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(directory, mode)
    except OSError as e:
        raise EnvFileError("cannot set up directory %s: %s" % (directory, e.strerror))


def temp_path_for(path):
    directory, name = os.path.split(path)
    return os.path.join(directory, ".%s.%s.tmp" % (name, secrets.token_hex(8)))


def write_atomic(path, content, uid, gid, mode, set_context=None):
    """Replace path with content, owned by uid:gid with mode, atomically.

    The temporary file is created in the same directory with mode 0600 (never more than owner-readable), synced and
    given its final owner, group and mode before it is renamed over path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _attempt in range(100):
        tmp = temp_path_for(path)
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise EnvFileError("cannot create a temporary file next to %s: %s" % (path, e.strerror))
    else:
        raise EnvFileError("cannot create a temporary file next to %s" % path)
    try:
        try:
            view = memoryview(content)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # Owner and group first, then the mode: group (or other) access is only granted to the final group.
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if set_context is not None:
            set_context(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise EnvFileError("cannot write %s: %s" % (path, e.strerror))
        raise
    fsync_directory(os.path.dirname(path))


# --- module ------------------------------------------------------------------------------------------------------

def run_present(module, path):
    p = module.params
    texts = normalize_values(p["values"])
    content = render(texts)
    mode = parse_mode(p["mode"], "mode")
    directory_mode = parse_mode(p["directory_mode"], "directory_mode")
    if mode & 0o007:
        module.warn("mode %04o lets every user on the host access %s, which holds secrets" % (mode, path))

    directory = os.path.dirname(path)
    real_directory = os.path.realpath(directory)
    if directory in PROTECTED_DIRECTORIES or real_directory in PROTECTED_DIRECTORIES:
        raise EnvFileError(
            "refusing to manage %s: its directory %s is a shared system directory whose owner, group and mode "
            "this module would change; put the file in a directory of its own such as /etc/<app>/" % (path, directory))

    resolved = True
    try:
        uid = resolve_user(p["owner"])
        gid = resolve_group(p["group"])
        dir_uid = resolve_user(DIRECTORY_OWNER)
    except EnvFileError as e:
        if not module.check_mode:
            raise
        # In check mode the user or group may be created by an earlier task that did not run.
        module.warn("%s; assuming it would exist" % e)
        resolved = False

    st, existing = read_existing(path)
    if st is not None and existing is None:
        raise EnvFileError("%s exists and is not a regular file (symlinks are not followed)" % path)

    if existing is None:
        old = {}
    else:
        try:
            old = parse_env(existing)
        except EnvFileParseError:
            old = None
    changed_keys, before, after = compare(old, texts)

    try:
        dir_st = os.stat(directory)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise EnvFileError("cannot inspect directory %s: %s" % (directory, e.strerror))
        dir_st = None
    if dir_st is not None and not stat.S_ISDIR(dir_st.st_mode):
        raise EnvFileError("%s is not a directory" % directory)

    if resolved:
        dir_changed = dir_st is None or attributes_differ(dir_st, dir_uid, gid, directory_mode)
        file_changed = existing != content or attributes_differ(st, uid, gid, mode)
    else:
        dir_changed = True
        file_changed = True

    if not module.check_mode:
        if dir_changed:
            ensure_directory(directory, dir_uid, gid, directory_mode)
        if file_changed:
            write_atomic(path, content, uid, gid, mode, set_context=selinux_setter(module, path))

    result = dict(changed=dir_changed or file_changed, path=path, keys=sorted(texts), changed_keys=changed_keys)
    return result, before, after


def selinux_setter(module, path):
    """A function giving the temporary file the SELinux context the final path should have, or None."""
    if not module.selinux_enabled():
        return None
    context = module.selinux_default_context(path)

    def set_context(tmp):
        module.set_context_if_different(tmp, context, False)

    return set_context


def run_absent(module, path):
    st, existing = read_existing(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise EnvFileError("%s is a directory" % path)
    changed_keys, before, after = [], "", ""
    if st is not None:
        old = None
        if existing is not None:
            try:
                old = parse_env(existing)
            except EnvFileParseError:
                old = None
        if old is None:
            before = UNPARSEABLE_LINE + "\n"
        else:
            changed_keys, before, after = compare(old, {})
        if not module.check_mode:
            try:
                os.unlink(path)
            except OSError as e:
                raise EnvFileError("cannot remove %s: %s" % (path, e.strerror))
            fsync_directory(os.path.dirname(path))
    return dict(changed=st is not None, path=path, keys=[], changed_keys=changed_keys), before, after


def unmasked_texts(values):
    """Texts of values too short or blank to be secrets, which Ansible's output masking should skip.

    Ansible replaces every no_log value wherever it appears in the output. This module never outputs a value, so
    for such values the masking would only garble key names, paths and messages (a value " " masks every space,
    a value "4" every digit 4) while hiding nothing.
    """
    texts = set()
    if isinstance(values, dict):
        for value in values.values():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                continue
            text = str(value)
            if len(text.strip()) < MIN_MASKED_LENGTH:
                texts.add(text)
    return texts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            values=dict(type="dict", no_log=True),
            owner=dict(type="str", default="root"),
            group=dict(type="str"),
            mode=dict(type="raw", default="0640"),
            directory_mode=dict(type="raw", default="0750"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ("values", "group"))],
        supports_check_mode=True,
    )
    module.no_log_values.difference_update(unmasked_texts(module.params["values"]))
    # The invocation Ansible adds to the result shows the module arguments; without the masking above it would
    # show the short values, so it is given here with every value replaced.
    args = dict(module.params)
    if isinstance(args["values"], dict):
        args["values"] = dict((key, "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER") for key in args["values"])
    invocation = dict(module_args=args)

    path = module.params["path"]
    if not os.path.basename(path):
        module.fail_json(msg="path must name a file, not a directory: %s" % path, changed=False, path=path,
                         invocation=invocation)
    path = os.path.abspath(path)
    try:
        if module.params["state"] == "present":
            result, before, after = run_present(module, path)
        else:
            result, before, after = run_absent(module, path)
    except EnvFileError as e:
        module.fail_json(msg=str(e), changed=False, path=path, invocation=invocation)
    if module._diff:
        result["diff"] = dict(before_header=path, after_header=path, before=before, after=after)
    module.exit_json(invocation=invocation, **result)


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""Allowlists for every input of webstack.django that reaches a host.

Values from the inventory end up in systemd unit files, tmpfiles.d lines, nginx configuration, the environment
file and paths that get deleted. Each check here is an allowlist matched against the whole value
(``re.fullmatch``; a pattern ending in ``$`` would also accept a trailing newline), so a newline, a ``%`` (a
systemd specifier), a space or a ``..`` component never gets through.

Used by the test plugins (``plugins/test/inputs.py``), the filter plugins (``plugins/filter/inputs.py``) and the
``env_file`` module. Pure functions, standard library only.
"""

from __future__ import annotations

import posixpath
import re

# --- names ----------------------------------------------------------------------------------------------------------

RELEASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
APP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
# Debian's user and group names (useradd and adduser's defaults, without the trailing $ of Samba machine accounts).
ACCOUNT_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PYTHON_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
APP_MODULE_RE = re.compile(_DOTTED + ":" + _DOTTED)
_IP_ITEM = r"[0-9A-Fa-f.:]+(?:/[0-9]{1,3})?"
IP_LIST_RE = re.compile(r"\*|" + _IP_ITEM + "(?:," + _IP_ITEM + ")*")
URL_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
URL_QUERY_RE = re.compile(r"[A-Za-z0-9._~/=&-]*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME_RE = re.compile(r"(?:" + _LABEL + r"(?:\." + _LABEL + r")*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

# --- paths ----------------------------------------------------------------------------------------------------------

# Characters of a path that may appear in a unit file, a tmpfiles.d line or an nginx directive as they are.
SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._/@+-]*")
RELATIVE_PATH_RE = re.compile(r"[A-Za-z0-9._@+-]+(?:/[A-Za-z0-9._@+-]+)*")
PATH_MAX = 4095

# Names that belong to the system or to common software as directories under /etc/ and /run/ (and /srv/): an app
# or an environment file directory must not take them, because the roles set the owner, group and mode of
# /etc/<app>/, /run/<app>/ and the environment file's directory.
RESERVED_NAMES = frozenset([
    "alternatives", "ansible", "apache2", "apparmor", "apt", "ca-certificates", "cloud", "console-setup",
    "containerd", "cron", "cryptsetup", "dbus-1", "default", "dhcp", "docker", "dpkg", "fonts", "init",
    "initramfs", "initramfs-tools", "iproute2", "iptables", "kernel", "ldap", "letsencrypt", "lock", "log",
    "logcheck", "modules", "mount", "mysql", "network", "networkd-dispatcher", "nftables", "nginx", "opt", "pam",
    "perl", "php", "polkit-1", "postgresql", "python3", "redis", "resolvconf", "rsyslog", "security", "selinux",
    "sendsigs", "shm", "skel", "ssh", "sshd", "ssl", "sudo", "sysconfig", "systemd", "terminfo", "tmpfiles", "udev",
    "ufw", "user", "utmp", "www-data", "x11", "xdg",
])

# Directories of the system itself; after normalisation a path equal to one of them is refused as an app's own
# (writable, deleted or owned) directory. Subdirectories are fine (/var/lib/<app>), except under SYSTEM_TREES.
SYSTEM_DIRECTORIES = frozenset([
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lost+found", "/media", "/mnt", "/opt", "/proc",
    "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
    "/usr/bin", "/usr/games", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec",
    "/usr/libx32", "/usr/local", "/usr/local/bin", "/usr/local/etc", "/usr/local/games", "/usr/local/include",
    "/usr/local/lib", "/usr/local/sbin", "/usr/local/share", "/usr/local/src", "/usr/sbin", "/usr/share",
    "/usr/src",
    "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt",
    "/var/run", "/var/spool", "/var/tmp", "/var/www",
    "/run/lock", "/run/shm", "/run/systemd", "/run/user",
])
# Trees that are the system's as a whole: nothing below them is an app's own directory.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/proc", "/sbin", "/sys", "/etc/systemd", "/etc/ssl", "/etc/nginx",
                "/etc/apt", "/etc/ssh", "/etc/pam.d", "/etc/security", "/etc/sudoers.d", "/etc/cron.d", "/run/systemd",
                "/usr/bin", "/usr/sbin", "/usr/lib", "/var/lib/dpkg", "/var/lib/apt", "/var/lib/systemd")
# Top-level library directories of any architecture (/lib, /lib32, /lib64, /libx32, ...) and what they hold.
_TOP_LIB_RE = re.compile(r"/lib[A-Za-z0-9_]*(?:/.*)?", re.DOTALL)


def _text(value, numbers=False):
    """value as text, or None when it is not a string (numbers too when numbers is true; never booleans)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)):
        return str(value)
    return None


def _fullmatch(pattern, value, numbers=False):
    text = _text(value, numbers)
    return text is not None and pattern.fullmatch(text) is not None


def is_release_id(value):
    """A release id: ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\\Z, never '.' or '..' (a directory name under releases/)."""
    # A float would not name the directory its author wrote (1.10 is 1.1): only strings and integers.
    text = None if isinstance(value, float) else _text(value, numbers=True)
    return text is not None and text not in (".", "..") and RELEASE_ID_RE.fullmatch(text) is not None


def is_app_name(value):
    """An app name: lower case letters, digits and '-', 1 to 31 characters, starting with a letter, and not a name
    the system uses under /etc/ or /run/ (see RESERVED_NAMES)."""
    return _fullmatch(APP_NAME_RE, value) and value not in RESERVED_NAMES


def is_account_name(value):
    """A Debian user or group name: lower case letters, digits, '_' and '-', starting with a letter or '_', at most
    32 characters."""
    return _fullmatch(ACCOUNT_NAME_RE, value)


def is_env_name(value):
    """An environment variable name: [A-Za-z_][A-Za-z0-9_]* (the whole value)."""
    return _fullmatch(ENV_NAME_RE, value)


def is_python_identifier(value):
    """A Python name without dots, such as a Django project package."""
    return _fullmatch(PYTHON_IDENTIFIER_RE, value)


def is_app_module(value):
    """A module:attribute as the app servers load it, both dotted Python names (myproject.asgi:application)."""
    return _fullmatch(APP_MODULE_RE, value)


def is_ip_list(value):
    """'*' or comma-separated IP addresses or networks (no spaces), as in forwarded_allow_ips."""
    return _fullmatch(IP_LIST_RE, value)


def is_url_path(value, query=False):
    """An absolute URL path of letters, digits and . _ ~ / - (with query, an optional ?query of those and = &)."""
    text = _text(value)
    if text is None:
        return False
    path, mark, rest = text.partition("?")
    if mark and not query:
        return False
    return URL_PATH_RE.fullmatch(path) is not None and (not mark or URL_QUERY_RE.fullmatch(rest) is not None)


def is_host_name(value):
    """A host name (DNS labels), an IPv4 address or a [bracketed] IPv6 address, with an optional :port."""
    return _fullmatch(HOST_NAME_RE, value)


def env_value_problem(value):
    """Why value cannot be written into a unit's Environment="NAME=value", or None.

    Refused: anything but a string or a number; control characters (C0 including TAB, CR and LF, DEL and C1);
    '"' and '\\' (they would end or change the quoting); surrogates and Unicode noncharacters. '%' is fine: the
    unit template escapes it as '%%' (filter systemd_escape_value).
    """
    text = _text(value, numbers=True)
    if text is None:
        return "is not a string or a number"
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return "contains a control character (such as a newline, carriage return or tab)"
        if char in '"\\':
            return "contains a double quote or a backslash"
        if 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return "contains a character that is not valid UTF-8 text"
    return None


def is_env_value(value):
    """Whether value may be written into a unit's Environment="NAME=value" (see env_value_problem)."""
    return env_value_problem(value) is None


def path_components(text):
    """The components of an absolute path, with one trailing '/' ignored; '/' has none."""
    body = text[1:]
    if body.endswith("/"):
        body = body[:-1]
    return body.split("/") if body else []


def is_safe_path(value):
    """An absolute path that can be written as it is into unit files, tmpfiles.d lines and nginx directives, and
    removed without surprise: only letters, digits and . _ / @ + - (so no whitespace, control character,
    newline, '%', quote or ';'), no empty, '.' or '..' component (a single trailing '/' is allowed), at most
    4095 characters."""
    text = _text(value)
    if text is None or len(text) > PATH_MAX or SAFE_PATH_RE.fullmatch(text) is None:
        return False
    return all(part not in ("", ".", "..") for part in path_components(text))


def is_relative_path(value):
    """A path relative to a release directory: components of letters, digits and . _ @ + -, none '.' or '..'."""
    text = _text(value)
    if text is None or len(text) > PATH_MAX or RELATIVE_PATH_RE.fullmatch(text) is None:
        return False
    return all(part not in (".", "..") for part in text.split("/"))


def is_child_of(value, parent):
    """Whether value lies strictly inside parent, exactly one component below it (a directory that may be removed
    as a whole, such as <base>/releases/<id>).

    Both must be absolute paths of the characters is_safe_path allows. Repeated and trailing '/' are ignored; a '.'
    or '..' component anywhere refuses (it is never resolved, so it can never point elsewhere).
    """
    text, base = _text(value), _text(parent)
    if text is None or base is None:
        return False
    if SAFE_PATH_RE.fullmatch(text) is None or SAFE_PATH_RE.fullmatch(base) is None:
        return False
    parts = [part for part in text.split("/") if part]
    base_parts = [part for part in base.split("/") if part]
    if any(part in (".", "..") for part in parts + base_parts):
        return False
    return len(parts) == len(base_parts) + 1 and parts[:-1] == base_parts


def normalize_path(text):
    """posixpath.normpath, with the '//' that POSIX leaves alone at the start collapsed too."""
    normal = posixpath.normpath(text)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def is_system_dir(value):
    """Whether value, normalised, is '/' or a directory of the system (SYSTEM_DIRECTORIES, or /lib* and
    SYSTEM_TREES with everything inside them), which no app may own, write or have removed. A value that is not
    a string or not absolute counts as one."""
    text = _text(value)
    if text is None or not text.startswith("/"):
        return True
    normal = normalize_path(text)
    if normal in SYSTEM_DIRECTORIES or _TOP_LIB_RE.fullmatch(normal):
        return True
    return any(normal == tree or normal.startswith(tree + "/") for tree in SYSTEM_TREES)


def is_writable_path(value):
    """A safe path (is_safe_path) that is not a system directory (is_system_dir): what an app may be given to
    write (systemd ReadWritePaths=), or own as its base directory."""
    return is_safe_path(value) and not is_system_dir(value)


def env_file_path_problem(value):
    """Why value cannot be an app's environment file, or None.

    The file must be /etc/<dir>/<file>: exactly one directory below /etc, named with letters, digits, '_' and
    '-' (no '.', so not cron.d, sudoers.d or any other *.d directory), which is not a name the system or common
    software uses (RESERVED_NAMES: ssl, systemd, nginx, default, ...). The env_file module sets that directory's
    owner, group and mode, so it must be the app's own.
    """
    if not is_safe_path(value):
        return ("must be an absolute path of letters, digits and . _ / @ + - only (no space, control character, "
                "'%' or '..')")
    parts = path_components(value)
    if value.endswith("/") or len(parts) != 3 or parts[0] != "etc":
        return "must be a file directly inside a directory of its own under /etc, such as /etc/<app>/<app>.env"
    directory = parts[1]
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", directory) is None or directory.lower() in RESERVED_NAMES:
        return ("must be in a directory of the app's own under /etc (/etc/%s/ belongs to the system or to other "
                "software)" % directory)
    return None


def is_env_file_path(value):
    """Whether value can be an app's environment file (see env_file_path_problem)."""
    return env_file_path_problem(value) is None


# --- encoding -------------------------------------------------------------------------------------------------------

def systemd_escape_value(value):
    """value as text for a systemd unit setting, '%' escaped as '%%' (systemd expands specifiers such as %h).

    Raises ValueError, without quoting the value, for what a unit file cannot hold safely: control characters
    (a newline would start a new setting), '"' and '\\', and anything but a string or a number.
    """
    problem = env_value_problem(value)
    if problem:
        raise ValueError("a value for a systemd unit " + problem)
    return _text(value, numbers=True).replace("%", "%%")

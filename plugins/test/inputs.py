# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""Jinja tests of webstack.django for the inputs that reach a host (documented in the adjacent <name>.yml files).

Every test matches the whole value against an allowlist (plugins/module_utils/inputs.py); the roles' validate
entry points use them to refuse bad values, naming the option, before any host changes.
"""

from __future__ import annotations

from ansible_collections.webstack.django.plugins.module_utils import inputs


class TestModule:
    """The webstack.django input tests."""

    def tests(self):
        return {
            "account_name": inputs.is_account_name,
            "app_module": inputs.is_app_module,
            "app_name": inputs.is_app_name,
            "child_of": inputs.is_child_of,
            "env_file_path": inputs.is_env_file_path,
            "env_name": inputs.is_env_name,
            "env_value": inputs.is_env_value,
            "host_name": inputs.is_host_name,
            "ip_list": inputs.is_ip_list,
            "python_identifier": inputs.is_python_identifier,
            "relative_path": inputs.is_relative_path,
            "release_id": inputs.is_release_id,
            "safe_path": inputs.is_safe_path,
            "system_dir": inputs.is_system_dir,
            "url_path": inputs.is_url_path,
            "writable_path": inputs.is_writable_path,
        }

# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""Jinja filters of webstack.django that encode inputs for the files they reach (documented in <name>.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.webstack.django.plugins.module_utils import inputs


def systemd_escape_value(value):
    """value for a systemd unit setting, '%' doubled; AnsibleFilterError for what a unit cannot hold safely."""
    try:
        return inputs.systemd_escape_value(value)
    except ValueError as e:
        raise AnsibleFilterError("webstack.django.systemd_escape_value: %s" % e) from None


class FilterModule:
    """The webstack.django input filters."""

    def filters(self):
        return {
            "systemd_escape_value": systemd_escape_value,
        }

#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_inputs
short_description: Digest of the variables a deploy applies, to tell whether anything changed
version_added: 0.1.0
description:
  - Templates every variable of the host whose name starts with O(prefix) (except those in O(ignore) or starting
    with one of O(ignore_prefixes)), adds O(extra), and returns the SHA-256 of the result.
  - The deploy playbook compares it, with a digest of the host's files, against what the last full deploy recorded,
    and skips the roles when both are the same.
  - A variable that cannot be templated where this runs (it refers to a role default not yet in scope) enters the
    digest as its text.
  - Runs on the controller (an action plugin); never changes anything. Values are never returned, only the digest,
    so secrets do not appear in the output.
author:
  - webstack.django maintainers (!UNKNOWN)
options:
  prefix:
    description: Prefix of the variable names to include.
    type: str
    default: webstack_
  ignore:
    description: Variable names to leave out (options that change how a run goes, not what it leaves on the host).
    type: list
    elements: str
    default: []
  ignore_prefixes:
    description: Prefixes of variable names to leave out.
    type: list
    elements: str
    default: []
  extra:
    description: More data to include in the digest (for example the release id).
    type: raw
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: It reads variables only, so it runs normally in check mode.
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Runs on the controller; the managed host is not contacted.
"""

EXAMPLES = r"""
- name: Digest the deploy's inputs
  webstack.django.deploy_inputs:
    ignore: [webstack_deploy_serial]
    ignore_prefixes: [webstack_lab_]
    extra:
      release: "{{ webstack_django_release_id }}"
  register: inputs
"""

RETURN = r"""
digest:
  description: SHA-256 (hex) of the included variables and O(extra).
  returned: always
  type: str
  sample: 3f1c0e5b9d2a7c4e8f6b1a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e
count:
  description: How many variables were included.
  returned: always
  type: int
  sample: 42
"""

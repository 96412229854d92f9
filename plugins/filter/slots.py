# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""Filters of the slot model (plugins/module_utils/slots.py) for the playbooks."""

from __future__ import annotations

from ansible_collections.webstack.django.plugins.module_utils import slots


def rollback_target(state, release=""):
    """{'target': slot description or {}, 'refusal': message or ''} of a rollback from ``state``."""
    target, message = slots.rollback_target(state or {}, release or "")
    return {"target": target, "refusal": message}


def other_slot(slot):
    """The slot a deploy builds while ``slot`` is active (blue when none is)."""
    return slots.other_slot(slot)


class FilterModule:
    def filters(self):
        return {"rollback_target": rollback_target, "other_slot": other_slot}

# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""The slot_description filter: the description of a slot a deploy builds (plugins/module_utils/slots.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.webstack.django.plugins.module_utils import slots


def slot_description(slot, app, server, release, release_dir, media_root="", worker_class="sync",
                     daphne_instances=slots.DEFAULT_DAPHNE_INSTANCES, websocket_paths=None, environment="",
                     collection="", options=None, run_dir=None):
    """The slot description of ``slot`` running ``server`` (see slots.describe_slot)."""
    try:
        return slots.describe_slot(
            app, slot, server, release, release_dir, media_root=media_root, worker_class=worker_class,
            daphne_instances=daphne_instances, websocket_paths=websocket_paths, environment=environment,
            collection=collection, options=options, run_dir=run_dir)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("slot_description: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"slot_description": slot_description}

# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""Action plugin of webstack.django.deploy_inputs (documented in plugins/modules/deploy_inputs.py)."""

from __future__ import annotations

import hashlib
import json

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        prefix = args.get("prefix", "webstack_")
        ignore = set(args.get("ignore") or [])
        ignore_prefixes = tuple(args.get("ignore_prefixes") or [])
        templar = self._templar.copy_with_new_env(available_variables=task_vars)

        values = {}
        for name in sorted(task_vars):
            if not name.startswith(prefix) or name in ignore or (ignore_prefixes and name.startswith(ignore_prefixes)):
                continue
            try:
                values[name] = templar.template(task_vars[name])
            except Exception:  # pylint: disable=broad-exception-caught
                # A value that cannot be templated here (it refers to a role default not in
                # scope): its text still tells whether it changed.
                values[name] = {"untemplated": str(task_vars[name])}

        blob = json.dumps({"vars": values, "extra": args.get("extra")}, sort_keys=True, default=str)
        result.update(changed=False, digest=hashlib.sha256(blob.encode()).hexdigest(), count=len(values))
        return result

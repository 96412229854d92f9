"""Ansible callback of the benchmark: the wall time of every task, written as JSON
lines to the file named by WEBSTACK_TASK_TIMING (nothing is written without it).

Enabled by tools/bench.py with ANSIBLE_CALLBACK_PLUGINS and
ANSIBLE_CALLBACKS_ENABLED=task_timing; `tools/bench.py --profile FILE` sums it up.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_timing
type: aggregate
short_description: write the wall time of every task as JSON lines
description: Used by the benchmark of webstack.django (tools/bench.py).
requirements: [WEBSTACK_TASK_TIMING names the output file]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        path = os.environ.get("WEBSTACK_TASK_TIMING", "")
        self._out = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 (kept open for the run)
        self._task = None
        self._started = 0.0
        self._play = ""

    def _close_task(self):
        if self._out and self._task is not None:
            self._out.write(json.dumps({
                "play": self._play,
                "task": self._task.get_name(),
                "role": self._task._role.get_name() if self._task._role else "",
                "action": self._task.action,
                "seconds": round(time.monotonic() - self._started, 3),
            }) + "\n")
            self._out.flush()
        self._task = None

    def v2_playbook_on_play_start(self, play):
        self._close_task()
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self._task = task
        self._started = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        if self._out:
            self._out.close()
            self._out = None

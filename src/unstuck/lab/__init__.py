"""The lab: built-in training tasks and experiments that run optimizers on them.

Sits on top of the optimizer core (which never imports it). ``unstuck.lab.tasks`` holds the
tasks, ``unstuck.lab.demo`` the digits demo behind ``unstuck demo``.
"""

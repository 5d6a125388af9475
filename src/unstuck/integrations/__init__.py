"""Integrations: the frameworks and log files unstuck reads (each imports its framework lazily).

- :mod:`unstuck.integrations.lightning`: ``DoctorCallback``, a Lightning ``Callback`` that
  monitors every optimizer step of ``Trainer.fit`` and writes the doctor's report.
- :mod:`unstuck.integrations.huggingface`: ``DoctorCallback``, a ``transformers.TrainerCallback``
  doing the same inside ``transformers.Trainer``.
- :mod:`unstuck.integrations.loop`: ``watch(model, optimizer)``, the same in your own loop.
- :mod:`unstuck.integrations.logs`: ``read_log``, the doctor on log files a training already
  wrote (JSON Lines, CSV, Lightning, Hugging Face, TensorBoard).

Nothing is imported here: ``import unstuck.integrations.lightning`` imports Lightning, and the
core of unstuck never imports a framework.
"""

"""The doctor: from measurements to verdicts, evidence and fixes.

- :func:`diagnose` reads loss curves (and optionally a Monitor's records, a simpler reference
  model's training loss, a critical-point probe) and returns a :class:`Diagnosis`: ranked
  :class:`Verdict` objects with stable :data:`CODES`, the numbers that triggered them and the
  fixes in the guide's words.
- :func:`examine` runs a short monitored training of a model (plus a shallower reference and a
  Hessian probe where needed) and diagnoses it.
- :mod:`unstuck.doctor.scenarios` holds one small real training per verdict code
  (``unstuck doctor --scenario NAME``).
- ``Diagnosis.save_html(path)`` writes a self-contained report.
"""

from unstuck.doctor.diagnose import diagnose
from unstuck.doctor.examine import examine, reference_model
from unstuck.doctor.verdicts import CODES, TITLES, Diagnosis, Verdict

__all__ = ["CODES", "TITLES", "Diagnosis", "Verdict", "diagnose", "examine", "reference_model"]

"""Invoke tasks for fleet, for ``inv`` in a clone of this repository.

The tasks live in the installed :mod:`fleetctl` package (the ``fleet`` command runs the
same ones: ``fleet restart`` is ``inv fleet.restart``); this file only re-exports them as
the ``fleet``, ``roster`` and ``build`` namespaces. It is not installed: nothing named
``tasks`` lands in site-packages.
"""

from __future__ import annotations

from fleetctl.namespaces import ns
from fleetctl.program import render_parse_errors_of_running_inv

__all__ = ["ns"]

render_parse_errors_of_running_inv()

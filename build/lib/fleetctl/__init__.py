"""The ``fleet`` command line: Invoke tasks that parse flags, call :mod:`fleetlib` and render.

``fleetlib`` never imports Invoke; everything that knows about flags, exit codes and
terminals lives here. The same task objects serve two entry points: the installed
``fleet`` program (:mod:`fleetctl.program`: fleet tasks at the top, ``roster.*`` and
``build.*`` beside them) and ``inv`` in a clone of the repository (``tasks.py``
re-exports :data:`fleetctl.namespaces.ns`: ``fleet.*``, ``roster.*``, ``build.*``).
"""

"""``python -m fleetctl``: the ``fleet`` command without its console script."""

from fleetctl.program import main

main()

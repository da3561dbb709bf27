"""The fleet in a browser: ``fleet serve``'s ASGI app (:func:`fleetweb.app.create_app`),
the page it serves (``static/``) and the rules that keep it safe (:mod:`fleetweb.guard`)."""

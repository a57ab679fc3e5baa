"""The web GUI served at ``/gui`` by the global and by every zone CP.

In the kernel rather than in ``global_cp`` (where DESIGN.md first put the GUI files)
because both control planes serve it and neither may import the other: ``routes`` mounts
the static single-page app (``static/``) and its read-only views, ``session`` is the
sign-in cookie the API's guard accepts for GUI reads, ``views`` the pure computations
behind the pages the generic API does not answer.
"""

"""The app's runtime: the worker thread that owns the session, the controller that talks to
it, and the plain-numpy snapshots that travel between them (no widgets here)."""

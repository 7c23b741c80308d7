"""One module per command-line command: ``configure(parser)`` and ``run(args)``."""

"""Analysis panels: one module per panel, docked by :mod:`gptviz_app.panels.docks`."""

"""The main window and its views: token strip, attention map, head grid, next-token chart,
stepping and sampling controls, status bar, theme."""

"""Preferences that persist between runs: last model, theme, font scales, colormap, window
geometry and state, recent sessions and recent prompts.

:class:`Preferences` wraps a ``QSettings`` (organisation ``"gptviz"``, application
``"gptviz"`` by default) or, with ``Preferences.in_memory()``, a plain dict: windows made by
tests and scripts use that, so they never read or write the user's settings. ``main.py``
passes the persistent one.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "gptviz"
APPLICATION = "gptviz"
#: How many recent sessions / prompts are remembered.
MAX_RECENT = 10
THEME_MODES = ("system", "light", "dark")


class Preferences:
    """Typed access to the stored preferences.

    Parameters
    ----------
    settings
        A ``QSettings`` to use; ``None`` opens ``QSettings("gptviz", "gptviz")``.
    """

    def __init__(self, settings: QSettings | None = None) -> None:
        self._qs = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)
        self._mem: dict[str, Any] | None = None

    @classmethod
    def in_memory(cls) -> Preferences:
        """Preferences that live only as long as this object (tests, scripts)."""
        p = cls.__new__(cls)
        p._qs = None
        p._mem = {}
        return p

    @classmethod
    def at_path(cls, path: str) -> Preferences:
        """Preferences in an INI file at ``path`` (tests use a temporary one)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    @property
    def persistent(self) -> bool:
        return self._qs is not None

    # ------------------------------------------------------------------ raw access
    def value(self, key: str, default: Any = None) -> Any:
        if self._mem is not None:
            return self._mem.get(key, default)
        v = self._qs.value(key, default)
        return default if v is None else v

    def set_value(self, key: str, value: Any) -> None:
        if self._mem is not None:
            self._mem[key] = value
        else:
            self._qs.setValue(key, value)

    def remove(self, key: str) -> None:
        if self._mem is not None:
            self._mem.pop(key, None)
        else:
            self._qs.remove(key)

    def sync(self) -> None:
        if self._qs is not None:
            self._qs.sync()

    # ------------------------------------------------------------------ typed helpers
    def _float(self, key: str, default: float, lo: float, hi: float) -> float:
        try:
            v = float(self.value(key, default))
        except (TypeError, ValueError):
            return default
        return v if lo <= v <= hi else default

    def _str(self, key: str, default: str = "") -> str:
        v = self.value(key, default)
        return v if isinstance(v, str) else default

    def _list(self, key: str) -> list[str]:
        v = self.value(key, [])
        if isinstance(v, str):  # QSettings (INI) gives a one-element list back as a string
            v = [v] if v else []
        if not isinstance(v, (list, tuple)):
            return []
        return [str(x) for x in v if isinstance(x, str) and x]

    def _bytes(self, key: str) -> QByteArray | None:
        v = self.value(key, None)
        if isinstance(v, QByteArray) and not v.isEmpty():
            return v
        if isinstance(v, (bytes, bytearray)) and v:
            return QByteArray(bytes(v))
        return None

    # ------------------------------------------------------------------ preferences
    @property
    def last_model(self) -> str:
        return self._str("model/last")

    @last_model.setter
    def last_model(self, path: str) -> None:
        self.set_value("model/last", str(path))

    @property
    def theme(self) -> str:
        """``"system"``, ``"light"`` or ``"dark"``."""
        v = self._str("view/theme", "system")
        return v if v in THEME_MODES else "system"

    @theme.setter
    def theme(self, mode: str) -> None:
        if mode not in THEME_MODES:
            raise ValueError(f"theme must be one of {THEME_MODES} (got {mode!r})")
        self.set_value("view/theme", mode)

    @property
    def font_scale(self) -> float:
        """Font scale outside presentation mode."""
        return self._float("view/font_scale", 1.0, 0.5, 4.0)

    @font_scale.setter
    def font_scale(self, v: float) -> None:
        self.set_value("view/font_scale", float(v))

    @property
    def presentation_scale(self) -> float:
        """Font scale in presentation mode."""
        return self._float("presentation/font_scale", 1.6, 0.5, 4.0)

    @presentation_scale.setter
    def presentation_scale(self, v: float) -> None:
        self.set_value("presentation/font_scale", float(v))

    @property
    def presentation_colormap(self) -> str:
        return self._str("presentation/colormap", "cividis")

    @presentation_colormap.setter
    def presentation_colormap(self, name: str) -> None:
        self.set_value("presentation/colormap", str(name))

    @property
    def colormap(self) -> str:
        return self._str("view/colormap", "")

    @colormap.setter
    def colormap(self, name: str) -> None:
        self.set_value("view/colormap", str(name))

    @property
    def geometry(self) -> QByteArray | None:
        return self._bytes("window/geometry")

    @property
    def window_state(self) -> QByteArray | None:
        return self._bytes("window/state")

    def set_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.set_value("window/geometry", geometry)
        self.set_value("window/state", state)

    # ------------------------------------------------------------------ recent lists
    def recent(self, kind: str) -> list[str]:
        """Most recent first; ``kind`` is ``"sessions"`` or ``"prompts"``."""
        return self._list(f"recent/{kind}")[:MAX_RECENT]

    def add_recent(self, kind: str, item: str) -> list[str]:
        """Put ``item`` first in the list (once); returns the new list."""
        if not item:
            return self.recent(kind)
        items = [item] + [x for x in self.recent(kind) if x != item]
        items = items[:MAX_RECENT]
        self.set_value(f"recent/{kind}", items)
        return items

    def remove_recent(self, kind: str, item: str) -> list[str]:
        items = [x for x in self.recent(kind) if x != item]
        self.set_value(f"recent/{kind}", items)
        return items

    def clear_recent(self, kind: str) -> None:
        self.set_value(f"recent/{kind}", [])

"""ANSI SGR colours in job logs as HTML: colours and bold become spans, everything else
is escaped text.

Only Select Graphic Rendition (`ESC [ ... m`) is kept: 16 colours as classes
(`ansi-fg-1`, `ansi-bg-12`), 256 colours and 24-bit colours as an inline colour computed
from the numbers (never from the log's text), bold, dim, italic and underline. Every other
escape sequence (cursor moves, erase, window titles) and control character is dropped.
A line is rendered on its own, starting unstyled: a log view can start at any line.
Written here (60 lines, tested) rather than taken from a library: the candidates either
emit inline styles from the input or carry state across calls, and static/log.js mirrors
this for live lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from markupsafe import Markup, escape

# CSI sequences, OSC strings (ended by BEL or ST), and any other ESC + one character.
_ESCAPES = re.compile(r"\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Style:
    fg: str | None = None  # a class suffix ("1".."15") or "#rrggbb"
    bg: str | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def open_tag(self) -> str:
        classes = [name for name, on in self._flags() if on]
        styles = []
        for prefix, colour, prop in (("fg", self.fg, "color"), ("bg", self.bg, "background")):
            if colour is None:
                continue
            if colour.startswith("#"):
                styles.append(f"{prop}:{colour}")
            else:
                classes.append(f"ansi-{prefix}-{colour}")
        if not classes and not styles:
            return ""
        attributes = f' class="{" ".join(classes)}"' if classes else ""
        attributes += f' style="{";".join(styles)}"' if styles else ""
        return f"<span{attributes}>"

    def _flags(self) -> tuple[tuple[str, bool], ...]:
        return (
            ("ansi-bold", self.bold),
            ("ansi-dim", self.dim),
            ("ansi-italic", self.italic),
            ("ansi-underline", self.underline),
        )


def to_html(line: str) -> Markup:
    """One log line as HTML: escaped text in styled spans."""
    if "\x1b" not in line and not _CONTROLS.search(line):
        return escape(line)
    out: list[str] = []
    style = Style()
    position = 0
    for match in _ESCAPES.finditer(line):
        _text(out, style, line[position : match.start()])
        position = match.end()
        if match.group(2) == "m":
            style = apply_sgr(style, match.group(1))
    _text(out, style, line[position:])
    return Markup("".join(out))  # noqa: S704 (each piece went through escape() or is a tag we made)


def _text(out: list[str], style: Style, text: str) -> None:
    text = _CONTROLS.sub("", text)
    if not text:
        return
    tag = _open_tag(style)
    out.append(f"{tag}{escape(text)}</span>" if tag else str(escape(text)))


@lru_cache(maxsize=1024)
def _open_tag(style: Style) -> str:
    return style.open_tag()


@lru_cache(maxsize=4096)  # a log repeats the same few sequences: parse each once
def apply_sgr(style: Style, params: str) -> Style:
    """The style after `ESC [ params m`."""
    codes = [int(p) if p.isdigit() else 0 for p in re.split("[;:]", params)] if params else [0]
    index = 0
    while index < len(codes):
        code = codes[index]
        index += 1
        if code in (38, 48):
            colour, index = _extended(codes, index)
            if colour is not None:
                style = replace(style, fg=colour) if code == 38 else replace(style, bg=colour)
        else:
            style = _simple(style, code)
    return style


def _simple(style: Style, code: int) -> Style:
    changes: dict[str, object] = {}
    if code == 0:
        return Style()
    if code in (1, 2, 3, 4):
        changes[("bold", "dim", "italic", "underline")[code - 1]] = True
    elif code == 22:
        changes.update(bold=False, dim=False)
    elif code in (23, 24):
        changes["italic" if code == 23 else "underline"] = False
    elif 30 <= code <= 37 or 90 <= code <= 97:
        changes["fg"] = str(code - 30 if code < 90 else code - 82)
    elif 40 <= code <= 47 or 100 <= code <= 107:
        changes["bg"] = str(code - 40 if code < 100 else code - 92)
    elif code in (39, 49):
        changes["fg" if code == 39 else "bg"] = None
    return replace(style, **changes)  # type: ignore[arg-type]


def _extended(codes: list[int], index: int) -> tuple[str | None, int]:
    """`5;n` (256 colours) or `2;r;g;b` (24-bit) after a 38 or 48."""
    mode = codes[index] if index < len(codes) else None
    if mode == 5 and index + 1 < len(codes):
        return _palette(codes[index + 1]), index + 2
    if mode == 2 and index + 3 < len(codes):
        r, g, b = (max(0, min(255, c)) for c in codes[index + 1 : index + 4])
        return f"#{r:02x}{g:02x}{b:02x}", index + 4
    return None, len(codes)


def _palette(n: int) -> str | None:
    if not 0 <= n <= 255:
        return None
    if n < 16:
        return str(n)
    if n < 232:
        n -= 16
        levels = [0 if v == 0 else 55 + 40 * v for v in (n // 36, (n // 6) % 6, n % 6)]
        return "#" + "".join(f"{v:02x}" for v in levels)
    grey = 8 + 10 * (n - 232)
    return f"#{grey:02x}{grey:02x}{grey:02x}"

"""A few SVG elements as strings: what the widgets' cheap pictures are made of.

A number line or a bar chart is a few dozen elements. Written as an SVG string it costs a millisecond, travels
as text in a stock ``ipywidgets.HTML`` (JupyterLab, Notebook 7, VS Code, Colab, and a saved notebook's widget
state alike), and the browser draws it sharp at any size. Nothing here knows about widgets or numbers formats.

Labels must stay inside the picture, but Python cannot measure text the browser will draw. ``text_width``
estimates it from DejaVu Sans' advance widths (the widest of the fonts the pictures ask for: DejaVu Sans,
then Arial/Helvetica, both narrower), so a layout built on it leaves room to spare; the browser tests measure
the real boxes.
"""

from __future__ import annotations

import html
import math

FONT = "DejaVu Sans, Bitstream Vera Sans, Arial, Helvetica, sans-serif"
HALO = "paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round"  # text readable over lines

# DejaVu Sans advance widths in em (its units per em are 2048), for the characters the pictures use.
_EM = {
    **dict.fromkeys("0123456789", 0.636), " ": 0.318, ".": 0.318, ",": 0.318, ":": 0.337, ";": 0.337,
    "(": 0.390, ")": 0.390, "[": 0.390, "]": 0.390, "-": 0.361, "+": 0.838, "=": 0.838, "×": 0.838,
    "−": 0.838, "/": 0.337, "|": 0.337, "·": 0.318, "_": 0.500, "%": 0.950, "'": 0.275, "≤": 0.838,
    "≥": 0.838, "…": 1.000, "◀": 0.770, "▼": 0.770, "■": 0.770, "^": 0.838, "*": 0.500,
    "a": 0.613, "b": 0.635, "c": 0.550, "d": 0.635, "e": 0.615, "f": 0.352, "g": 0.635, "h": 0.634,
    "i": 0.278, "j": 0.278, "k": 0.579, "l": 0.278, "m": 0.974, "n": 0.634, "o": 0.612, "p": 0.635,
    "q": 0.635, "r": 0.411, "s": 0.521, "t": 0.392, "u": 0.634, "v": 0.592, "w": 0.818, "x": 0.592,
    "y": 0.592, "z": 0.525, "A": 0.684, "B": 0.686, "C": 0.698, "D": 0.770, "E": 0.632, "F": 0.575,
    "G": 0.775, "H": 0.752, "I": 0.295, "J": 0.295, "K": 0.656, "L": 0.557, "M": 0.863, "N": 0.748,
    "O": 0.787, "P": 0.603, "Q": 0.787, "R": 0.695, "S": 0.635, "T": 0.611, "U": 0.732, "V": 0.684,
    "W": 0.989, "X": 0.685, "Y": 0.611, "Z": 0.685,
}
_SUPERSCRIPT = str.maketrans("0123456789-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻")


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Estimated width (px) of ``text`` at font ``size`` px: DejaVu Sans' advances, bold 10 % wider."""
    em = sum(_EM.get(ch, 0.6 if ch in "⁰¹²³⁴⁵⁶⁷⁸⁹⁻" else 0.7) for ch in text)
    return em * size * (1.1 if bold else 1.0)


def power_of_ten(exponent: int) -> str:
    """'10⁻⁴⁵' for -45: a log axis' tick label in plain text."""
    return "10" + str(exponent).translate(_SUPERSCRIPT)


def fmt(x: float) -> str:
    """A coordinate with at most two decimals (the strings stay short)."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class Svg:
    """An SVG picture built element by element, ``width`` x ``height`` CSS pixels (shrinks to its column)."""

    def __init__(self, width: float, height: float, title: str = "", css: str = "") -> None:
        self.width, self.height, self.title, self.css = width, height, title, css
        self.parts: list[str] = []

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str, width: float = 1.0,
             dash: str = "", opacity: float = 1.0) -> None:
        extra = (f' stroke-dasharray="{dash}"' if dash else "") + (f' opacity="{opacity:g}"' if opacity < 1 else "")
        self.parts.append(f'<line x1="{fmt(x1)}" y1="{fmt(y1)}" x2="{fmt(x2)}" y2="{fmt(y2)}" stroke="{colour}" '
                          f'stroke-width="{width:g}"{extra}/>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, opacity: float = 1.0, title: str = "",
             stroke: str = "") -> None:
        """A rectangle; ``title`` is the tooltip a person sees on hovering it."""
        attrs = f'x="{fmt(x)}" y="{fmt(y)}" width="{fmt(max(w, 0.0))}" height="{fmt(h)}" fill="{fill}"'
        if opacity < 1:
            attrs += f' opacity="{opacity:g}"'
        if stroke:
            attrs += f' stroke="{stroke}" stroke-width="1.5"'
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        self.parts.append(f"<rect {attrs}>{tip}</rect>" if tip else f"<rect {attrs}/>")

    def polygon(self, points: list[tuple[float, float]], fill: str) -> None:
        coords = " ".join(f"{fmt(x)},{fmt(y)}" for x, y in points)
        self.parts.append(f'<polygon points="{coords}" fill="{fill}"/>')

    def text(self, x: float, y: float, text: str, size: float = 11, anchor: str = "start", colour: str = "#222",
             bold: bool = False, rotate: float = 0.0, halo: bool = False, css: str = "") -> None:
        """Text whose baseline starts (or ends, or is centred: ``anchor``) at (x, y)."""
        attrs = f'x="{fmt(x)}" y="{fmt(y)}" font-size="{size:g}" fill="{colour}"'
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        if bold:
            attrs += ' font-weight="bold"'
        if rotate:
            attrs += f' transform="rotate({rotate:g} {fmt(x)} {fmt(y)})"'
        style = ";".join(s for s in (HALO if halo else "", css) if s)
        if style:
            attrs += f' style="{style}"'
        self.parts.append(f"<text {attrs}>{html.escape(text)}</text>")

    def render(self) -> str:
        """The picture as one ``<svg>`` element, at most as wide as its column (the aspect ratio is kept)."""
        label = f' role="img" aria-label="{html.escape(self.title)}"' if self.title else ""
        css = f' class="{self.css}"' if self.css else ""
        return (f'<svg xmlns="http://www.w3.org/2000/svg"{css} width="{fmt(self.width)}" height="{fmt(self.height)}" '
                f'viewBox="0 0 {fmt(self.width)} {fmt(self.height)}"{label} '
                f'style="max-width:100%;height:auto;display:block;font-family:{FONT}">'
                + "".join(self.parts) + "</svg>")


class Scale:
    """Data -> pixels along one axis, linear or log10."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool = False) -> None:
        self.log = log
        self.low, self.high = (math.log10(low), math.log10(high)) if log else (low, high)
        self.start, self.end = start, end

    def __call__(self, x: float) -> float:
        v = math.log10(x) if self.log else x
        span = self.high - self.low
        return self.start + (v - self.low) / span * (self.end - self.start) if span else self.start


def nice_ticks(high: float, most: int = 6) -> list[float]:
    """Round tick values from 0 to at least ``high`` (1, 2, 2.5 or 5 times a power of ten apart)."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / most
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    count = math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]

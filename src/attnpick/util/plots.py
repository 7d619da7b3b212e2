"""matplotlib, set up once for attnpick's PNGs (the loss curve, the bench plots): the Agg backend (no screen
needed), a font that has Hangul where one is installed, and no warnings about missing glyphs where none is
(the text then shows boxes for Korean characters, which is all matplotlib can do without such a font)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnpick.util import files

# Fonts with Hangul, in order of preference: Windows, macOS, Linux (Noto CJK, Nanum, Un, Baekmuk).
HANGUL_FONTS = ("Malgun Gothic", "Apple SD Gothic Neo", "AppleGothic", "Noto Sans CJK KR", "Noto Sans KR",
                "NanumGothic", "NanumBarunGothic", "UnDotum", "Baekmuk Gulim")


def hangul_font() -> str | None:
    """The first installed font of `HANGUL_FONTS`, or None."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in HANGUL_FONTS if name in installed), None)


@contextmanager
def pyplot() -> Iterator[Any]:
    """`matplotlib.pyplot` with the Agg backend and a Hangul font in front of the default one, glyph warnings
    silenced; figures made inside should be saved and closed inside."""
    import matplotlib  # heavy: only when a plot is made

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = hangul_font()
    families = ([font] if font else []) + list(matplotlib.rcParams["font.sans-serif"])
    with matplotlib.rc_context({"font.sans-serif": families, "axes.unicode_minus": False}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support Hangul")
        yield plt


def save(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """Write `fig` as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    files.write_bytes(path, buffer.getvalue())

"""Sphinx-Gallery image scraper for the figures that ratiokit's plot helpers return.

ratiokit draws outside pyplot's global state (library code never leaves figures open), so
Sphinx-Gallery's matplotlib scraper, which walks pyplot's list of open figures, does not
see them. After each code block this scraper saves every figure bound to a name in the
example's namespace (directly, or as the figure of an Axes) that is not managed by pyplot
and was not saved before, in the order the names were bound. It runs before the matplotlib
scraper, while the block's pyplot figures are still open and recognisable.
"""

from __future__ import annotations

import weakref
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sphinx_gallery.scrapers import figure_rst

#: Figures saved (or left to the matplotlib scraper): each appears once, after its block.
_SAVED: weakref.WeakSet[Figure] = weakref.WeakSet()


def figure_scraper(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
    """Save the new non-pyplot figures of the example's namespace; return their reST."""
    figures: list[Figure] = []
    for value in block_vars["example_globals"].values():
        fig = value.figure if isinstance(value, Axes) else value
        if not isinstance(fig, Figure) or fig in _SAVED:
            continue
        if fig.canvas.manager is not None:
            # An open pyplot figure: the matplotlib scraper (after this one) saves and closes
            # it; remember it, since a closed figure no longer shows that it was pyplot's.
            _SAVED.add(fig)
        elif all(fig is not other for other in figures):
            figures.append(fig)
    paths = []
    # The path iterator is longer than any example needs: stop at the last figure.
    for fig, path in zip(figures, block_vars["image_path_iterator"], strict=False):
        fig.savefig(path)
        _SAVED.add(fig)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])

"""Sphinx configuration of the ratiokit documentation (``make docs``).

Markdown pages are read by MyST, docstrings by numpydoc, and the scripts in ``examples/`` are
run by sphinx-gallery on every build, so a broken example fails the build (``-W``).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch

import ratiokit

# gallery_scraper.py, beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The build runs every example in this process: one torch thread, as the test suite uses, so
# the build does not oversubscribe a small shared CPU.
torch.set_num_threads(1)
# The examples' progress bars would otherwise land in the rendered pages.
os.environ.setdefault("TQDM_DISABLE", "1")
# Matplotlib without a display.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "ratiokit"
author = "the ratiokit developers"
copyright = "the ratiokit developers"  # noqa: A001 - the name Sphinx reads
version = release = ratiokit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**/*.zip"]
templates_path = ["_templates"]

# MyST: $...$ and $$...$$ maths, ::: fences, and anchors for ## headings (cross-page links).
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# API reference: one page per public object, generated from the docstrings.
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
# numpydoc renders the sections; the class templates list the members themselves, so
# numpydoc's own member tables (which would document each member twice) are off.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Validation: deliberately the checks of structure that a reader notices, not the style
# checks (summary punctuation, "See Also" presence, ...). GL08: a public object without a
# docstring; SS01: no summary; PR02: a documented parameter the signature lacks;
# RT01 is left out because properties and __call__ document returns in prose.
numpydoc_validation_checks = {"GL08", "SS01", "PR02"}
numpydoc_validation_exclude = {
    r"\.__init__$",
    r"\.forward$",  # torch.nn.Module.forward: documented on each class
    r"\.extra_repr$",
    r"\.T_destination$",
    r"\.call_super_init$",
    r"\.dump_patches$",
    r"\.training$",
}

html_theme = "pydata_sphinx_theme"
html_title = f"ratiokit {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
html_show_sourcelink = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib",),
    # ratiokit's plot helpers return figures outside pyplot; see gallery_scraper.py.
    "image_scrapers": ("gallery_scraper.figure_scraper", "matplotlib"),
    "matplotlib_animations": False,
    "show_memory": False,
    "min_reported_time": 1,
}

# Examples draw with matplotlib on the Agg backend; its "non-interactive" warning on
# plt.show() is noise in the pages.
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive")

"""Sphinx configuration of the rendered course (``make book``).

The pages are the notebooks as ``medsymmflow course`` executed them (fast profile, trained-once
caches): the source folder is its output, ``runs/course/<profile>/``, with this folder's
``index.md`` copied beside them by the Makefile. myst-nb renders them without executing again
(``nb_execution_mode = "off"``), so the book shows exactly the outputs that run produced, each page
headed by the runner's stamp (profile, device, commit, seconds).
"""

project = "MedSymmFlow — a course and a library"
author = "The MedSymmFlow course contributors"
copyright = "2026, " + author

extensions = ["myst_nb"]
nb_execution_mode = "off"  # executed once, by `medsymmflow course`
nb_output_stderr = "show"  # a warning printed by a cell is part of what the reader should see
myst_enable_extensions = ["dollarmath", "amsmath"]  # the chapters' $...$ and $$...$$
myst_heading_anchors = 3  # [text](#a-heading) links inside a chapter resolve
exclude_patterns = ["*.html"]  # the runner's standalone HTML copies sit beside the notebooks
suppress_warnings = ["mystnb.unknown_mime_type"]  # widget views: static pages show their text fallback

html_theme = "sphinx_book_theme"
html_title = "MedSymmFlow course"
html_theme_options = {"show_toc_level": 2, "use_download_button": True}

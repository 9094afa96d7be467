"""Open every chapter page of the built book in headless Chromium and check that it rendered.

    python scripts/check_book.py build/book --chapters notebooks --screenshots build/book-screens

For each chapter ``NN_*.ipynb`` in ``--chapters`` there must be a page ``NN_*.html``. Chromium loads
it (the theme's scripts run) and dumps the DOM; the check then asks of that DOM:

- figures: at least one ``<img>``, and every image it names exists and decodes (PNG/JPEG/SVG files
  beside the page, or inline ``data:`` images);
- no error cells: no traceback output, and the runner's stamp does not say the run stopped;
- internal links: every relative ``href`` names a file that exists, and its ``#fragment`` an
  ``id`` in that page.

``--readme`` also checks the README's chapter table: every chapter has a link to its rendered page
(``build/book/NN_*.html``, relative to the README), and every such link names a page that was built.

``--screenshots`` saves full-width screenshots of the pages named by ``--shoot`` (two by default).
Exits 1 with one line per problem, 0 with a line per page when all is well.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag

from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000")


class PageDOM(HTMLParser):
    """What the check needs of one page: images, links, ids, and the classes of its outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.tracebacks = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if "traceback" in (attrs.get("class") or "").split():
            self.tracebacks += 1

    def handle_data(self, data):
        self.text.append(data)


def browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    raise SystemExit(
        f"no headless browser found (looked for {', '.join(BROWSERS)}); `make book-test` installs chromium"
    )


def rendered_dom(chrome: str, page: Path) -> str:
    """The page's DOM after Chromium has loaded it and run its scripts."""
    result = subprocess.run(
        [chrome, *FLAGS, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0 or "<body" not in result.stdout:
        raise RuntimeError(f"chromium could not render {page.name}: {result.stderr.strip()[-300:]}")
    return result.stdout


def parse(html: str) -> PageDOM:
    dom = PageDOM()
    dom.feed(html)
    return dom


def image_problem(page: Path, src: str) -> str | None:
    """Why an image of ``page`` would not show, or None."""
    try:
        if src.startswith("data:"):
            header, payload = src.split(",", 1)
            raw = base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode()
            if "svg" in header:
                return None if b"<svg" in raw else "inline SVG without <svg>"
        else:
            path = (page.parent / unquote(urldefrag(src).url)).resolve()
            if not path.is_file():
                return f"missing image {src}"
            if path.suffix == ".svg":
                return None if b"<svg" in path.read_bytes()[:4096] else f"not an SVG: {src}"
            raw = path.read_bytes()
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
    except Exception as failure:  # noqa: BLE001 - any failure to decode is the finding
        return f"image {src[:60]} does not decode ({failure})"
    return None


def link_problems(page: Path, dom: PageDOM, site: Path, ids_of) -> list[str]:
    problems = []
    for href in dom.links:
        if href.startswith(("http://", "https://", "mailto:", "javascript:")):
            continue
        target, fragment = urldefrag(href)
        if not target:  # a link within the page: its id must be in the rendered DOM
            if fragment and unquote(fragment) not in dom.ids:
                problems.append(f"link {href}: no id {fragment!r} in this page")
            continue
        path = (page.parent / unquote(target)).resolve()
        if not path.exists():
            problems.append(f"broken link {href}")
        elif fragment and path.suffix == ".html" and site in path.parents and unquote(fragment) not in ids_of(path):
            problems.append(f"link {href}: no id {fragment!r} in {path.name}")
    return problems


def readme_problems(readme: Path, site: Path, chapters: list[str]) -> list[str]:
    """Links of the README (Markdown ``[text](target)``) into the built site: one per chapter, none broken."""
    site = site.resolve()
    targets = [urldefrag(t)[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme.read_text(encoding="utf-8"))]
    pages = [(readme.parent / t).resolve() for t in targets if not t.startswith(("http://", "https://", "#"))]
    pages = [p for p in pages if site in p.parents]
    problems = [f"README links to {p.relative_to(site)}, which was not built" for p in pages if not p.is_file()]
    linked = {p.stem for p in pages}
    problems += [f"README has no link to the rendered page of {name}" for name in chapters if name not in linked]
    return problems


def check(
    site: Path, chapters: list[str], screenshots: Path | None, shoot: list[str], readme: Path | None = None
) -> int:
    chrome = browser()
    static_ids: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in static_ids:
            static_ids[path] = parse(path.read_text(encoding="utf-8")).ids
        return static_ids[path]

    failures = []
    for name in chapters:
        page = site / f"{name}.html"
        if not page.is_file():
            failures.append(f"{name}: no page {page}")
            continue
        dom = parse(rendered_dom(chrome, page))
        problems = [] if dom.images else ["no figure"]
        problems += [p for src in dom.images if (p := image_problem(page, src))]
        if dom.tracebacks:
            problems.append(f"{dom.tracebacks} error output(s)")
        text = " ".join(dom.text)
        if "Executed by" not in text:
            problems.append("no execution stamp")
        if "stopped with an error" in text:
            problems.append("the run that produced it stopped with an error")
        problems += link_problems(page, dom, site.resolve(), ids_of)
        failures += [f"{name}: {p}" for p in problems]
        print(
            f"{name:<48} {len(dom.images):3d} figures, {len(dom.links):3d} links, {'ok' if not problems else 'FAILED'}"
        )
    if readme:
        failures += readme_problems(readme, site, chapters)
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)
        for name in shoot:
            out = screenshots / f"{name}.png"
            subprocess.run(
                [
                    chrome,
                    *FLAGS,
                    "--window-size=1280,2400",
                    f"--screenshot={out}",
                    (site / f"{name}.html").resolve().as_uri(),
                ],
                capture_output=True,
                timeout=120,
                check=True,
            )
            print(f"screenshot: {out}")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built book (sphinx html output)")
    parser.add_argument("--chapters", type=Path, default=Path("notebooks"), help="folder of the NN_*.ipynb chapters")
    parser.add_argument("--screenshots", type=Path, help="folder for screenshots")
    parser.add_argument("--readme", type=Path, help="a README whose chapter table links to the built pages")
    parser.add_argument("--shoot", nargs="+", help="chapters to screenshot (default: the second and the fifth)")
    args = parser.parse_args()
    chapters = sorted(p.stem for p in args.chapters.glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        raise SystemExit(f"no NN_*.ipynb chapters in {args.chapters}")
    shoot = args.shoot or [chapters[min(1, len(chapters) - 1)], chapters[min(4, len(chapters) - 1)]]
    return check(args.site, chapters, args.screenshots, shoot, args.readme)


if __name__ == "__main__":
    sys.exit(main())

"""The built book's equations render with no network (scripts/check_offline_math.py).

The checks that open pages in headless Chromium run where `make book` has built _build/html
and Chromium is installed (`apt-get install chromium`); elsewhere (CI builds no book) they skip.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "_build" / "html"
_spec = importlib.util.spec_from_file_location("check_offline_math", ROOT / "scripts" / "check_offline_math.py")
check_offline_math = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_offline_math)

CHROMIUM = check_offline_math.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
needs_book = pytest.mark.skipif(
    not (BUILT / "_static" / "mathjax" / "tex-mml-chtml.js").is_file(),
    reason="no book built with local MathJax in _build/html (run `make book`)",
)

PAGE = """<!DOCTYPE html><html><head>{script}</head><body>
<p><span class="math notranslate nohighlight">\\(a^2\\)</span></p>
{extra}
</body></html>
"""


def _site(root: Path, script: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text("<html><body>index</body></html>")
    (root / "page.html").write_text(PAGE.format(script=script, extra=extra))
    return root


def test_static_check_flags_mathjax_from_a_cdn_or_missing(tmp_path):
    cdn = _site(tmp_path / "cdn", '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>')
    assert check_offline_math.static_problems(cdn) == [
        "page.html: MathJax is loaded from outside the book: https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    ]
    missing = _site(tmp_path / "missing", '<script src="_static/mathjax/tex-mml-chtml.js?v=1"></script>')
    assert check_offline_math.static_problems(missing) == [
        "page.html: MathJax script _static/mathjax/tex-mml-chtml.js?v=1 is not in the build"
    ]
    (missing / "_static" / "mathjax").mkdir(parents=True)
    (missing / "_static" / "mathjax" / "tex-mml-chtml.js").write_text("")
    assert check_offline_math.static_problems(missing) == []


@needs_chromium
@needs_book
def test_built_book_renders_its_math_offline():
    assert check_offline_math.check(BUILT, log=lambda *_: None) == []


@needs_chromium
@needs_book
def test_check_reports_untypeset_math_and_tex_errors(tmp_path):
    # The book's own MathJax; math in delimiters MathJax does not read here ($...$), and an undefined macro.
    site = _site(
        tmp_path / "site",
        '<script defer src="_static/mathjax/tex-mml-chtml.js"></script>',
        '<p><span class="math">$q$</span> and <span class="math">\\(\\undefinedmacro + 1\\)</span></p>',
    )
    (site / "_static").symlink_to(BUILT / "_static")
    problems = check_offline_math.check(site, pages=["page.html"], log=lambda *_: None)
    assert problems == [
        "page.html: math not typeset by MathJax, shown as raw TeX: '$q$'",
        "page.html: TeX error in an equation: \\undefinedmacro + 1: undefined control sequence \\undefinedmacro",
    ]

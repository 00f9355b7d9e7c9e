#!/usr/bin/env python3
"""Check that the built book typesets its equations with no network.

    python scripts/check_offline_math.py [_build/html] [--page book/method_known_answer.html ...]
                                         [--screenshot /tmp/math.png]

Two checks, and a non-zero exit with the reason if either fails:

1. Every page that loads MathJax loads it from the book itself (a relative ``src`` whose file is
   there), never from a CDN.
2. Each page with math (every page with an element of class ``math``, or the ``--page`` given) is
   opened in headless Chromium with the network off: in a new, empty network namespace
   (``unshare --net``) where the system allows one, and always with every host name unresolvable
   and every http(s) request sent to a closed proxy. A small harness page loads the page in an
   iframe, waits for MathJax's startup promise and the page's fonts, and reports: MathJax's
   version, every ``.math`` element that holds no ``mjx-container`` or still shows raw TeX
   (``\\(``, ``\\[``, ``$$`` ...), every TeX error (``merror``, or an undefined macro shown in
   red), and every font that failed to load. Raw TeX anywhere else in the visible text (outside
   code) counts as a failure too.

``--screenshot`` also saves a picture of the first checked page (1200 x 1600), offline as well.
Needs Chromium (Debian: ``apt-get install chromium``); ``make check-math`` runs it on _build/html.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Every name resolves to nothing and every http(s) request goes to a closed port: the network is
# off for Chromium even where no network namespace can be made.
NO_NETWORK_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9")
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)

# Loads the page in an iframe (same origin for file:// under --allow-file-access-from-files),
# waits for MathJax, then writes a JSON report into <pre id="report">, which --dump-dom prints.
HARNESS = r"""<!DOCTYPE html>
<html><body><pre id="report">pending</pre>
<iframe id="page" src="%(url)s" style="width: 1200px; height: 1600px"></iframe>
<script>
const report = document.getElementById("report");
const frame = document.getElementById("page");
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const RAW_TEX = /\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{/;
const SKIP = "script, style, pre, code, textarea, mjx-container";
frame.addEventListener("load", async () => {
  const out = {};
  try {
    const win = frame.contentWindow, doc = frame.contentDocument;
    for (let i = 0; i < 300 && !(win.MathJax && win.MathJax.startup && win.MathJax.startup.promise); i++)
      await sleep(50);
    const scripts = [...doc.querySelectorAll("script[src]")].map(s => s.src).filter(s => /mathjax/i.test(s));
    out.scripts = scripts;
    if (!(win.MathJax && win.MathJax.startup && win.MathJax.startup.promise)) {
      out.error = "MathJax did not start (its script did not load: " + (scripts.join(", ") || "none") + ")";
      return;
    }
    await win.MathJax.startup.promise;
    await doc.fonts.ready;
    out.version = win.MathJax.version;
    const maths = [...doc.querySelectorAll(".math")];
    out.math_elements = maths.length;
    out.containers = doc.querySelectorAll("mjx-container").length;
    out.untypeset = [];
    for (const el of maths) {
      let text = "";
      const walk = doc.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      while (walk.nextNode())
        if (!walk.currentNode.parentElement.closest("mjx-container")) text += walk.currentNode.nodeValue;
      if (!el.querySelector("mjx-container") || text.trim())
        out.untypeset.push((text.trim() || el.outerHTML).slice(0, 120));
    }
    out.raw_tex = [];
    const walk = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) {
      const node = walk.currentNode;
      if (RAW_TEX.test(node.nodeValue) && !node.parentElement.closest(SKIP + ", .math"))
        out.raw_tex.push(node.nodeValue.trim().slice(0, 120));
    }
    // TeX errors: merror nodes, and the red \name that MathJax's noundefined package shows for
    // an undefined macro; reported with the equation's TeX source.
    out.tex_errors = [];
    for (const item of Array.from(win.MathJax.startup.document.math)) {
      const bad = [];
      item.root.walkTree(node => {
        if (node.isKind("merror"))
          bad.push(node.attributes.get("data-mjx-error") || "error");
        else if (node.isKind("mtext") && node.attributes.get("mathcolor") === "red"
                 && node.getText().startsWith("\\"))
          bad.push("undefined control sequence " + node.getText());
      });
      if (bad.length) out.tex_errors.push(item.math.trim().slice(0, 120) + ": " + bad.join("; "));
    }
    out.fonts = {};
    doc.fonts.forEach(face => { out.fonts[face.family.replace(/"/g, "")] = face.status; });
  } catch (e) {
    out.error = "harness: " + e;
  } finally {
    report.textContent = JSON.stringify(out);
  }
});
</script></body></html>
"""


class _Scan(HTMLParser):
    """Collects a page's script sources and counts its elements of class ``math``."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.math = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if "math" in (attrs.get("class") or "").split():
            self.math += 1


def scan(page: Path) -> _Scan:
    parser = _Scan()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def pages_of(html_dir: Path) -> list[Path]:
    return sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.relative_to(html_dir).parts)


def static_problems(html_dir: Path) -> list[str]:
    """MathJax scripts that come from elsewhere than the book, or whose file is missing."""
    problems = []
    for page in pages_of(html_dir):
        for src in scan(page).scripts:
            if "mathjax" not in src.lower():
                continue
            rel = page.relative_to(html_dir)
            if REMOTE.match(src):
                problems.append(f"{rel}: MathJax is loaded from outside the book: {src}")
            elif not (page.parent / src.split("?")[0].split("#")[0]).is_file():
                problems.append(f"{rel}: MathJax script {src} is not in the build")
    return problems


def find_chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def offline_prefix() -> list[str]:
    """``unshare --net`` (mapping the user to root when not root) where it works, else nothing."""
    if not shutil.which("unshare"):
        return []
    for prefix in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return []


def run_chromium(chromium: str, args: list[str], workdir: Path, timeout: float) -> str:
    command = [
        *offline_prefix(), chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={workdir / 'profile'}",
        *NO_NETWORK_FLAGS, *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{chromium} exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def render_report(chromium: str, page: Path, timeout: float = 120) -> dict:
    """The harness's JSON report for one page, rendered offline."""
    with tempfile.TemporaryDirectory(prefix="check-math-") as tmp:
        harness = Path(tmp) / "harness.html"
        harness.write_text(HARNESS % {"url": page.resolve().as_uri()}, encoding="utf-8")
        dom = run_chromium(
            chromium,
            ["--allow-file-access-from-files", "--virtual-time-budget=30000", "--dump-dom",
             harness.as_uri()],
            Path(tmp), timeout,
        )
    found = re.search(r'<pre id="report">(.*?)</pre>', dom, re.DOTALL)
    if not found or found.group(1) == "pending":
        return {"error": "the harness did not finish (no report in Chromium's DOM dump)"}
    return json.loads(html.unescape(found.group(1)))


def report_problems(rel: str, report: dict) -> list[str]:
    if "error" in report:
        return [f"{rel}: {report['error']}"]
    problems = []
    if not report["math_elements"]:
        problems.append(f"{rel}: no element of class 'math' on the page")
    for text in report["untypeset"]:
        problems.append(f"{rel}: math not typeset by MathJax, shown as raw TeX: {text!r}")
    for text in report["raw_tex"]:
        problems.append(f"{rel}: raw TeX in the page's text: {text!r}")
    for message in report["tex_errors"]:
        problems.append(f"{rel}: TeX error in an equation: {message}")
    for family, status in report["fonts"].items():
        if family.startswith("MJX") and status == "error":
            problems.append(f"{rel}: MathJax font {family} failed to load")
    return problems


def screenshot(chromium: str, page: Path, png: Path, timeout: float = 120) -> None:
    with tempfile.TemporaryDirectory(prefix="check-math-") as tmp:
        run_chromium(
            chromium,
            ["--virtual-time-budget=30000", "--window-size=1200,1600",
             f"--screenshot={png.resolve()}", page.resolve().as_uri()],
            Path(tmp), timeout,
        )


def check(html_dir: Path, pages: list[str] | None = None, chromium: str | None = None,
          png: Path | None = None, log=print) -> list[str]:
    """Every problem found (an empty list when the math renders offline)."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir}: no built book here (run `make book` first)"]
    problems = static_problems(html_dir)
    if pages:
        targets = [html_dir / p for p in pages]
        problems += [f"{p}: no such page" for p in targets if not p.is_file()]
        targets = [p for p in targets if p.is_file()]
    else:
        targets = [p for p in pages_of(html_dir) if scan(p).math]
        if not targets:
            problems.append(f"{html_dir}: no page with math found")
    chromium = chromium or find_chromium()
    if not chromium:
        return problems + ["Chromium not found (apt-get install chromium, or set CHROMIUM)"]
    prefix = offline_prefix()
    log(f"network off: {' '.join(prefix) + ' + ' if prefix else ''}Chromium host-resolver and proxy flags")
    for page in targets:
        rel = page.relative_to(html_dir).as_posix()
        report = render_report(chromium, page)
        found = report_problems(rel, report)
        problems += found
        if "error" not in report:
            failed = sorted(f for f, s in report["fonts"].items() if f.startswith("MJX") and s == "error")
            loaded = sorted(f for f, s in report["fonts"].items() if f.startswith("MJX") and s == "loaded")
            log(f"{rel}: MathJax {report['version']} from {', '.join(report['scripts'])}; "
                f"{report['containers']} equations typeset of {report['math_elements']} math elements; "
                f"fonts loaded: {', '.join(loaded) or 'none'}{'; FAILED: ' + ', '.join(failed) if failed else ''}"
                f"{'  [' + str(len(found)) + ' problem(s)]' if found else '  ok'}")
    if png and targets:
        screenshot(chromium, targets[0], png)
        log(f"screenshot of {targets[0].relative_to(html_dir).as_posix()}: {png}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html", type=Path)
    parser.add_argument("--page", action="append", help="page to open, relative to HTML_DIR "
                        "(repeatable; default: every page with math)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the first page checked")
    parser.add_argument("--chromium", help="Chromium executable (default: $CHROMIUM or on PATH)")
    args = parser.parse_args(argv)
    problems = check(args.html_dir, args.page, args.chromium, args.screenshot)
    if problems:
        print(f"error: equations do not render offline ({len(problems)} problem(s)):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("ok: MathJax typesets every equation with the network off")
    return 0


if __name__ == "__main__":
    sys.exit(main())

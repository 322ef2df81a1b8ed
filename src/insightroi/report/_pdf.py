"""PDF export through headless Chromium's print-to-PDF (Playwright driving Debian's chromium)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

__all__ = ["export_pdf", "CHROMIUM", "CHROMIUM_ARGS"]

CHROMIUM = os.environ.get("INSIGHTROI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def export_pdf(html_path: str | Path, pdf_path: str | Path, *, executable_path: str | None = None) -> Path:
    """Print an HTML file to an A4 PDF with headless Chromium (backgrounds kept).

    Parameters
    ----------
    html_path : str or Path
        The report page (self-contained, so no network is needed).
    pdf_path : str or Path
        Where to write the PDF.
    executable_path : str, optional
        Chromium binary; defaults to ``$INSIGHTROI_CHROMIUM`` or ``/usr/bin/chromium``.

    Raises
    ------
    RuntimeError
        When Playwright or Chromium is not installed (the message says how to install them).
    """
    exe = executable_path or CHROMIUM
    if not Path(exe).exists():
        raise RuntimeError(f"PDF export needs Chromium at {exe} (apt-get install chromium, or set INSIGHTROI_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RuntimeError("PDF export needs Playwright: pip install playwright (no browser download needed)") from None
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _print(sync_playwright, exe, html_path, pdf_path)
    else:
        # Playwright's sync API refuses to run inside an event loop (a server, a notebook, another
        # Playwright session): print from a worker thread instead.
        failure: list[BaseException] = []

        def work() -> None:
            try:
                _print(sync_playwright, exe, html_path, pdf_path)
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)

        t = threading.Thread(target=work, name="insightroi-pdf")
        t.start()
        t.join()
        if failure:
            raise failure[0]
    return pdf_path


def _print(sync_playwright, exe: str, html_path: Path, pdf_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(html_path.as_uri(), wait_until="load")
            page.emulate_media(media="print")
            page.pdf(path=str(pdf_path), format="A4", print_background=True,
                     margin={"top": "14mm", "bottom": "14mm", "left": "12mm", "right": "12mm"})
        finally:
            browser.close()

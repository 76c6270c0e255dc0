"""One self-contained `report.html` per output folder: tables and every figure embedded (base64).

It opens from disk in any browser, with no server and no network.

Every value that reaches the page is escaped by construction: a section's body is `Markup`, built
only by the functions here (`table`, `figure`, `text`, `pre`, `markup` — whose template is fmnist's
own and whose values are escaped), and `write_report` refuses a plain string. A class name, a file
name or a field of a JSON file from elsewhere can never become markup.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from markupsafe import Markup, escape

from fmnist._io import write_text_atomic

__all__ = ["Markup", "escape", "figure", "markup", "pre", "table", "text", "write_report"]

STYLE = Markup("""
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.8em; border: 1px solid #ddd; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
""")


def markup(template: str, *values: object) -> Markup:
    """fmnist's own HTML `template` with its `{}` fields filled by escaped `values` (format specs work:
    `{:,}`, `{:.4f}`)."""
    return Markup(template).format(*values)


def text(value: object) -> Markup:
    """A paragraph of plain text."""
    return markup("<p>{}</p>", value)


def pre(value: object) -> Markup:
    """Preformatted plain text (a config file, a classification report)."""
    return markup("<pre>{}</pre>", value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Markup:
    """An HTML table; numbers are right-aligned."""
    head = Markup("").join(markup("<th>{}</th>", header) for header in headers)
    body = Markup("").join(
        markup("<tr>{}</tr>", Markup("").join(
            markup("<td class=num>{}</td>" if isinstance(value, (int, float)) else "<td>{}</td>", value)
            for value in row))
        for row in rows)
    return markup("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def figure(path: str | Path, caption: str) -> Markup:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return markup('<figure><img alt="{}" src="data:image/png;base64,{}"><figcaption>{}</figcaption></figure>',
                  caption, data, caption)


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, Markup]]) -> Path:
    """Write `sections` — (heading, body built by this module) pairs — as one page, atomically."""
    for heading, body in sections:
        if not isinstance(body, Markup):
            raise TypeError(f"report section {heading!r}: the body must be built by fmnist.report.html "
                            "(escaped by construction), not a plain string")
    parts = Markup("\n").join(markup("<h2>{}</h2>\n{}", heading, body) for heading, body in sections)
    page = markup("<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{}</title><style>{}</style>"
                  "</head>\n<body><h1>{}</h1>\n{}\n</body></html>\n", title, STYLE, title, parts)
    write_text_atomic(path, str(page))
    return Path(path)

"""mkdocs hooks of the documentation site (``mkdocs.yml``: ``hooks``); not part of the package.

* the notebooks (``notebooks/*.ipynb``, outside ``docs_dir``) are added to the site, rendered by mkdocs-jupyter;
* every figure a page embeds (``![...](figures/NAME.png)``) that is missing from ``theory/figures`` is replaced by a
  placeholder image that says how to make it (``dynlearn figs --quick --out theory/figures``), so the site builds
  strictly before the figures are made, and shows which are missing;
* ``<!-- dynlearn:learners -->`` in a page becomes the table of every registered model/rule (from the registry);
* every check's theory page that ``mkdocs.yml`` does not list goes into the "Theory" section under its family's
  title (so a new family's pages appear without editing the nav).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
FIGURE_REF = re.compile(r"\]\((?:\.\./)?figures/([A-Za-z0-9_]+)\.png\)")
MAKE = "dynlearn figs --quick --out theory/figures"


def _placeholder() -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 1.2))
    fig.text(0.5, 0.5, f"figure not generated yet: run\n{MAKE}", ha="center", va="center", fontsize=11, family="monospace")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the notebooks into pages
def on_files(files, config):
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File(f"notebooks/{nb.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    docs = Path(config["docs_dir"])
    wanted = {m for page in docs.rglob("*.md") for m in FIGURE_REF.findall(page.read_text(encoding="utf-8"))}
    missing = sorted(n for n in wanted if files.get_file_from_path(f"figures/{n}.png") is None)
    if missing:
        image = _placeholder()
        for name in missing:
            files.append(File.generated(config, f"figures/{name}.png", content=image))
    return files


def _nav_pages(nav) -> set[str]:
    found: set[str] = set()
    for item in nav or []:
        values = item.values() if isinstance(item, dict) else [item]
        for v in values:
            found |= _nav_pages(v) if isinstance(v, list) else {v}
    return found


def on_config(config):
    from dynlearn.theorems import checks
    from dynlearn.theorems.pages import FAMILY_TITLES

    listed = _nav_pages(config["nav"])
    theory = next((item["Theory"] for item in config["nav"] if isinstance(item, dict) and "Theory" in item), None)
    if theory is None:
        return config
    sections = {next(iter(s)): s[next(iter(s))] for s in theory if isinstance(s, dict)}
    for check in checks().values():
        page = Path(check.theory).name
        if page in listed or not (Path(config["docs_dir"]) / page).exists():
            continue
        title = FAMILY_TITLES.get(check.family, check.family.replace("_", " ").capitalize())
        if title not in sections:
            sections[title] = []
            theory.append({title: sections[title]})
        sections[title].append(page)
        listed.add(page)
    rest = sorted(p.name for p in Path(config["docs_dir"]).glob("*.md") if p.name not in listed and p.name != "README.md")
    if rest:
        theory.append({"Experiments and notes": rest})
    return config


def _learner_table() -> str:
    from dynlearn.rules import get_learner, learner_names

    rows = ["| learner | what it is | defaults |", "|---|---|---|"]
    for name in learner_names():
        try:
            lrn = get_learner(name)
        except Exception as e:  # noqa: BLE001 -- a learner that needs options: say so rather than hide it
            rows.append(f"| `{name}` | (needs options: {type(e).__name__}) | |")
            continue
        defaults = ", ".join(f"{k}={v}" for k, v in lrn.defaults.items() if isinstance(v, (int, float, str)))
        rows.append(f"| `{name}` | {lrn.description.replace('|', '/')} | {defaults} |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    if "<!-- dynlearn:learners -->" in markdown:
        markdown = markdown.replace("<!-- dynlearn:learners -->", _learner_table())
    return markdown

#!/usr/bin/env python3
"""Held-out and calibration text from The Rust Programming Language (MIT OR Apache-2.0), as the
rustup `rust-docs` component ships it (share/doc/rust/html/book/chNN-MM-*.html).

Usage: book_text.py BOOK_DIR OUT_DIR

Writes OUT_DIR/calibration.txt (the prose of chapters 1-11) and OUT_DIR/eval.txt (chapters
12-21): every <p> inside each page's <main>, tags stripped, entities decoded, whitespace
collapsed, one paragraph per line with a blank line between. Code listings, headings and the
page chrome are left out. The two texts come from disjoint chapters, and a paragraph found in
both (a caption) is dropped from the held-out text, so they never overlap.
Deterministic for a given book: scripts/setup.sh pins both outputs by SHA-256.
"""
import os
import re
import sys
from html.parser import HTMLParser

CHAPTER = re.compile(r"^ch(\d\d)-(\d\d)-.*\.html$")
# Chapters 1-11 calibrate (importance matrix, sensitivity); 12-21 are held out for evaluation.
LAST_CALIBRATION_CHAPTER = 11


class Paragraphs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_main = 0
        self.cur = None
        self.out = []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.in_main += 1
        elif tag == "p" and self.in_main and self.cur is None:
            self.cur = []

    def handle_endtag(self, tag):
        if tag == "main":
            self.in_main -= 1
        elif tag == "p" and self.cur is not None:
            text = re.sub(r"\s+", " ", "".join(self.cur)).strip()
            if text:
                self.out.append(text)
            self.cur = None

    def handle_data(self, data):
        if self.cur is not None:
            self.cur.append(data)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: book_text.py BOOK_DIR OUT_DIR")
    book, out = sys.argv[1], sys.argv[2]
    pages = sorted(
        (int(m.group(1)), int(m.group(2)), name)
        for name in os.listdir(book)
        if (m := CHAPTER.match(name))
    )
    if not pages:
        sys.exit(f"book_text.py: no chapter pages (chNN-MM-*.html) in {book}")
    texts = {"calibration.txt": [], "eval.txt": []}
    for chapter, _, name in pages:
        if chapter == 0:
            continue  # the introduction: front matter, not a chapter
        with open(os.path.join(book, name), encoding="utf-8") as f:
            p = Paragraphs()
            p.feed(f.read())
        # Redirect stubs (renumbered chapters) have no <main> and so no paragraphs.
        key = "calibration.txt" if chapter <= LAST_CALIBRATION_CHAPTER else "eval.txt"
        texts[key].extend(p.out)
    # A paragraph that stands in both halves (a caption such as "Filename: src/main.rs") is
    # kept for calibration only: not one paragraph of the held-out text is seen in calibration.
    seen = set(texts["calibration.txt"])
    texts["eval.txt"] = [p for p in texts["eval.txt"] if p not in seen]
    os.makedirs(out, exist_ok=True)
    for key, paras in texts.items():
        tmp = os.path.join(out, key + ".part")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(paras) + "\n")
        os.replace(tmp, os.path.join(out, key))
        print(f"{key}: {len(paras)} paragraphs", file=sys.stderr)


if __name__ == "__main__":
    main()

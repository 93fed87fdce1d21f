"""Derive the PoS-subspaces vocabulary from the WordNet 3.0 database (Debian package ``wordnet-base``).

For each part of speech (noun, adjective incl. satellites, verb, adverb) every lemma name of
every synset is collected, exactly as the official code does through NLTK's
``wn.all_synsets(pos)`` and ``synset.lemma_names()``: the word as written in the data file
(case kept), with the adjective position markers ``(a)``, ``(p)``, ``(ip)`` dropped. A lemma
is kept in a list only if it occurs in **no other** part of speech (case-sensitive, as the
official set differences). Underscores become spaces. Unlike the official lists, which come
from Python sets and change order with the hash seed, each list is **sorted** (code-point
order), because the geometry-aware model starts its intrinsic mean at the first noun.

Usage::

    apt-get install -y wordnet-base
    python tools/make_pos_vocab.py [--wordnet /usr/share/wordnet] [--out assets/pos_vocab]

Writes ``nouns.txt``, ``adjectives.txt``, ``verbs.txt``, ``adverbs.txt`` (one word a line) and
``LICENSE-WordNet.txt`` (the WordNet 3.0 licence, which must travel with derived copies).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

DATA_FILES = {"N": "data.noun", "A": "data.adj", "V": "data.verb", "AV": "data.adv"}
OUT_NAMES = {"N": "nouns.txt", "A": "adjectives.txt", "V": "verbs.txt", "AV": "adverbs.txt"}
ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")

LICENCE_HEADER = """\
The word lists in this folder are derived from WordNet 3.0 (Princeton University):
the lemma names of each part of speech that occur in exactly one part of speech,
sorted, with underscores replaced by spaces (tools/make_pos_vocab.py makes them from
the Debian package wordnet-base). WordNet's licence follows; it covers these lists.

"""

WORDNET_LICENCE = """\
WordNet Release 3.0

This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license.  By obtaining, using
and/or copying this software and database, you agree that you have
read, understood, and will comply with these terms and conditions.:

Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or
royalty is hereby granted, provided that you agree to comply with
the following copyright notice and statements, including the disclaimer,
and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal
use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR
IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT-
ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE
OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT
INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR
OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in
advertising or publicity pertaining to distribution of the software
and/or database.  Title to copyright in this software, database and
any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same.
"""


def lemma_names(data_file: Path) -> set[str]:
    """Every lemma name of every synset line of one ``data.*`` file."""
    names: set[str] = set()
    for line in data_file.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith("  "):  # the licence header lines start with two spaces
            continue
        fields = line.split()
        count = int(fields[3], 16)  # w_cnt is two hexadecimal digits
        for i in range(count):
            names.add(ADJ_MARKER.sub("", fields[4 + 2 * i]))
    return names


def single_pos_lists(wordnet: Path) -> dict[str, list[str]]:
    """Sorted words, per category, that appear in exactly one part of speech."""
    raw = {c: lemma_names(wordnet / f) for c, f in DATA_FILES.items()}
    out = {}
    for c, names in raw.items():
        others = set().union(*(v for k, v in raw.items() if k != c))
        out[c] = sorted(name.replace("_", " ") for name in names - others)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "pos_vocab")
    args = parser.parse_args(argv)
    if not (args.wordnet / "data.noun").is_file():
        parser.error(f"no WordNet database in {args.wordnet} (apt-get install wordnet-base)")
    args.out.mkdir(parents=True, exist_ok=True)
    for c, words in single_pos_lists(args.wordnet).items():
        (args.out / OUT_NAMES[c]).write_text("\n".join(words) + "\n", encoding="utf-8")
        print(f"{OUT_NAMES[c]}: {len(words)} words")
    (args.out / "LICENSE-WordNet.txt").write_text(LICENCE_HEADER + WORDNET_LICENCE, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Count the words of a book on the cluster: map a piece of text to its counts on the workers, add the counts up
here. Runs from the repo folder against `make up`'s cluster:

    python3 examples/wordcount.py [BOOK.txt] [--lines 40] [--master 127.0.0.1:5000] [--authkey-file .secrets/authkey]
"""

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the mpcluster package of this checkout

from mpcluster import Client  # noqa: E402


def pieces(path: Path, lines: int):
    """The book in pieces of ``lines`` lines: one task each."""
    with open(path, encoding="utf-8") as f:
        buf = []
        for line in f:
            buf.append(line)
            if len(buf) == lines:
                yield {"text": "".join(buf)}
                buf = []
        if buf:
            yield {"text": "".join(buf)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("book", nargs="?", default=str(ROOT / "examples" / "alice.txt"))
    p.add_argument("--lines", type=int, default=40, help="lines of text per task")
    p.add_argument("--master", default="127.0.0.1:5000")
    p.add_argument("--authkey-file", default=str(ROOT / ".secrets" / "authkey"))
    a = p.parse_args()
    started = time.monotonic()
    total, tasks = Counter(), 0
    with Client(a.master, authkey_file=a.authkey_file) as c:
        for counts in c.map("wordcount", pieces(Path(a.book), a.lines)):  # streamed, in input order
            total.update(counts)
            tasks += 1
    print(f"{sum(total.values())} words ({len(total)} different) in {Path(a.book).name}, counted by {tasks} tasks "
          f"in {time.monotonic() - started:.1f} s")
    for word, n in total.most_common(10):
        print(f"  {n:6} {word}")


if __name__ == "__main__":
    main()

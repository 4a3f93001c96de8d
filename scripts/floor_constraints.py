"""Print pip constraints that pin every dependency of pyproject.toml to its declared floor (``>=X`` -> ``==X``).

`FLOORS=1 bash scripts/setup.sh` installs with these, so that each floor the project declares can be run as a whole
(README: Tested versions); CI's legs test the newest releases. torch is left out: the environment pins it
(TORCH_SPEC on CPU machines, the container's own build on GPU clusters).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SKIP = {"torch"}
EXTRAS = ("test", "gguf")  # the extras scripts/setup.sh installs


def floors(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in EXTRAS for r in project.get("optional-dependencies", {}).get(e, [])]
    out = []
    for req in reqs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*(,.*)?", req)
        if m is None:
            raise SystemExit(f"{pyproject}: dependency {req!r} has no '>=' floor; every dependency needs one")
        if m.group(1).lower() not in SKIP:
            out.append(f"{m.group(1)}=={m.group(3)}")
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(floors(path)))

"""What every benchmark script shares: the CPU's name for the machine line, and writing one section of
docs/benchmarks.md (between <!-- bench:KEY --> and <!-- /bench:KEY -->, replaced in place, appended when new), so
each script owns its section and leaves the others alone."""
import os
import platform
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def loadavg():
    """The 1/5/15-minute load averages as "a/b/c" (a benchmark line says how busy the machine was)."""
    try:
        with open("/proc/loadavg") as f:
            return "/".join(f.read().split()[:3])
    except OSError:
        return "?"


def write_section(key, text, path=DOC):
    """Replaces (or appends) the section KEY of docs/benchmarks.md with text; returns the path written, relative."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n\nEach section is written by the script it names.\n"
    block = f"<!-- bench:{key} -->\n{text}\n<!-- /bench:{key} -->"
    pat = rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->"
    if re.search(pat, doc, flags=re.S):
        doc = re.sub(pat, lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)
    return os.path.relpath(path, ROOT)

#!/usr/bin/env bash
# Lists the functions longer than N lines (default 120) in the C and CUDA sources of the tree: "LINES file:first-last
# name", longest first. A function is a top-level brace block whose header reads like a call (`name(...)`), which also
# catches Criterion's Test(suite, name) bodies; comments, strings and preprocessor lines are skipped. Exit status 0
# whatever it finds (a report, not a gate); data/spm.c's model loader is exempt by the architecture issue, not here.
# Usage: scripts/long_functions.sh [N] [path...]   (default: the files git tracks)
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-120}
shift || true
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh'); fi
python3 - "$limit" "${files[@]}" <<'PY'
import re, sys

def strip(text):
    """Comments, string and char literals and preprocessor lines blanked, newlines kept (so line numbers hold)."""
    out, i, n = [], 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c in ' \t':
            out.append(c); i += 1; continue
        if at_line_start and c == '#':  # a directive, with its continuation lines
            while i < n and not (text[i] == '\n' and text[i - 1] != '\\'):
                out.append('\n' if text[i] == '\n' else ' '); i += 1
            continue
        at_line_start = False
        if text.startswith('//', i):
            while i < n and text[i] != '\n': out.append(' '); i += 1
            continue
        if text.startswith('/*', i):
            j = text.find('*/', i + 2); j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j; continue
        if c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + re.sub(r'[^\n]', ' ', text[i + 1:j]) + c); i = j + 1; continue
        if c == '\n': at_line_start = True
        out.append(c); i += 1
    return ''.join(out)

limit, found = int(sys.argv[1]), []
for path in sys.argv[2:]:
    try:
        src = strip(open(path, encoding='utf-8', errors='replace').read())
    except OSError:
        continue
    depth, header, line, start, name = 0, '', 1, 0, None
    for c in src:
        if c == '\n': line += 1
        if depth == 0:
            if c == '{':
                h = ' '.join(header.split())
                m = re.search(r'(\w+)\s*\([^{}]*\)\s*(?:__attribute__\s*\(\(.*\)\))?\s*$', h)
                head_kw = re.match(r'(?:typedef|struct|enum|union|extern\s*$)', h)
                if m and not head_kw and '=' not in h[:m.start()]:
                    name, start = m.group(1) if m.group(1) not in ('Test', 'ParameterizedTest') else h[m.start():], header_line
                else:
                    name = None
                depth = 1; header = ''
                continue
            if c in ';}':
                header = ''; continue
            if not header.strip() and not c.isspace(): header_line = line
            header += c
        else:
            if c == '{': depth += 1
            elif c == '}':
                depth -= 1
                if depth == 0 and name:
                    if line - start + 1 > limit: found.append((line - start + 1, path, start, line, name))
                    name = None
for n, path, a, b, name in sorted(found, reverse=True):
    print(f'{n:5d} {path}:{a}-{b} {name}')
PY

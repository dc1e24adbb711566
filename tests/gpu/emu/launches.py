# For the CUDA emulator (tests/gpu/emu): rewrite kernel launches `k<<<g, b, shm, stream>>>(args);` as `emu_launch(g, b, [&]() { k(args); });`
import re, sys

def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{<': depth += 1 if ch in '([{' else 0
        if ch in ')]}': depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]

src = open(sys.argv[1]).read()
out, i = '', 0
pat = re.compile(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<')
while True:
    m = pat.search(src, i)
    if not m:
        out += src[i:]; break
    out += src[i:m.start()]
    j = src.index('>>>', m.end())
    cfg = split_top(src[m.end():j])
    # args: balanced parens after >>>
    k = j + 3
    assert src[k] == '(', src[k:k+40]
    depth, e = 0, k
    while True:
        if src[e] == '(': depth += 1
        elif src[e] == ')':
            depth -= 1
            if depth == 0: break
        e += 1
    args = src[k+1:e]
    out += 'emu_launch(dim3(%s), dim3(%s), [&]() { %s(%s); })' % (cfg[0], cfg[1], m.group(1), args)
    i = e + 1
open(sys.argv[2], 'w').write(out)

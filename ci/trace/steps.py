#!/usr/bin/env python3
"""ci/trace/steps.py — where a decode step's time goes, from a ci/trace/cutrace.c kernel trace.

Steps end at the kernel matching --step-end (the argmax's last kernel); the last --steps whole
steps of each device are read. Kernels are taken in start order, and each is charged the time from
the end of everything before it to its own end ("exposed": under programmatic dependent launch a
kernel starts before the previous one ends, so durations overlap; the exposed times add up to the
step exactly). Within a step, a kernel's position counts from the last kernel matching --layer-mark
(the rotary embedding: one a layer), so the table shows one layer's kernels in order, each averaged
over its layers and steps; kernels before the first mark of a step are at position "pre".

    python3 ci/trace/steps.py trace.csv [--steps 8] [--device 0]
    python3 ci/trace/steps.py --self-test
"""
import argparse
import collections
import csv
import re
import sys

# What a kernel is, for the shares: the first pattern its name matches.
GROUPS = [
    ('products', r'k_skinny|k_generic|gemm|nvjet|xmma'),
    ('tp sums (incl. fused add + norm)', r'p2p|nccl|k_sum_ranks'),
    ('attention', r'k_att_'),
    ('rope', r'k_rope'),
    ('norms', r'norm'),
    ('swiglu', r'swiglu'),
]


# The kernels before a step's first layer mark (the embedding, the first norm and product): their
# exposed time holds the host's turnaround between steps, so they have a share of their own.
STEP_START = 'step start (host turnaround included)'


def short(name):
    """The kernel's name without its mangling: _Z13k_skinny_wideILi1E... -> k_skinny_wide."""
    m = re.match(r'_Z(\d+)', name)
    if m:
        return name[m.end():m.end() + int(m.group(1))]
    return name.split('(')[0][:40]


def read(path):
    """Kernels by device: (start, end, grid x, name)."""
    by_dev = collections.defaultdict(list)
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            by_dev[int(row['dev'])].append(
                (int(row['start']), int(row['end']), int(row['gx']), short(row['name'])))
    for ks in by_dev.values():
        ks.sort()
    return by_dev


def analyse(ks, steps, step_end, layer_mark):
    """Per-position rows and totals of one device's last `steps` whole steps (None if fewer)."""
    ends = [i for i, k in enumerate(ks) if re.search(step_end, k[3])]
    if len(ends) < steps + 1:
        return None
    sel = ends[-(steps + 1):]
    pos_rows = collections.OrderedDict()
    groups = collections.defaultdict(float)
    total = 0.0
    for a, b in zip(sel, sel[1:]):
        prev_end = ks[a][1]
        step_start = prev_end
        pos = None
        for k in ks[a + 1:b + 1]:
            if re.search(layer_mark, k[3]):
                pos = 0
            key = ('pre' if pos is None else pos, k[3], k[2])
            exposed = (k[1] - prev_end) / 1e3
            e = pos_rows.setdefault(key, [0, 0.0, 0.0])
            e[0] += 1
            e[1] += (k[1] - k[0]) / 1e3
            e[2] += exposed
            g = STEP_START if pos is None else next(
                (n for n, rx in GROUPS if re.search(rx, k[3])), 'other')
            groups[g] += exposed
            prev_end = max(prev_end, k[1])
            if pos is not None:
                pos += 1
        total += (prev_end - step_start) / 1e3
    return pos_rows, groups, total / steps


def report(by_dev, steps, step_end, layer_mark, devices, out=sys.stdout):
    for dev in sorted(by_dev):
        if devices is not None and dev not in devices:
            continue
        res = analyse(by_dev[dev], steps, step_end, layer_mark)
        if res is None:
            print(f'device {dev}: fewer than {steps + 1} step ends ({step_end})', file=out)
            continue
        rows, groups, step_us = res
        print(f'device {dev}: {steps} steps, {step_us / 1e3:.3f} ms a step', file=out)
        print(f'{"pos":>4} {"kernel":28} {"grid":>6} {"a step":>6} {"dur us":>8} '
              f'{"exposed us":>10} {"ms a step":>9}', file=out)
        order = sorted(rows, key=lambda k: (k[0] != 'pre', k[0] if k[0] != 'pre' else 0))
        for key in order:
            n, dur, exp = rows[key]
            print(f'{key[0]:>4} {key[1][:28]:28} {key[2]:6d} {n / steps:6.1f} {dur / n:8.2f} '
                  f'{exp / n:10.2f} {exp / steps / 1e3:9.3f}', file=out)
        for g, us in sorted(groups.items(), key=lambda t: -t[1]):
            print(f'share {g}: {us / steps / 1e3:.3f} ms a step = '
                  f'{100 * us / steps / step_us:.1f}%', file=out)


def self_test():
    """Two steps of two layers on a made-up clock: the attribution must add up exactly."""
    ks, t = [], 0

    def k(name, dur, overlap=0):
        nonlocal t
        start = t - overlap
        ks.append((start, start + dur, 1, name))
        t = start + dur

    k('k_argmax_final', 1000)
    for _ in range(2):
        k('k_embed', 3000)
        for _ in range(2):
            k('k_rope', 2000)
            k('k_skinny_ring', 10000, overlap=1000)
            k('k_p2p_sum', 4000)
        k('k_argmax_final', 1000)
    rows, groups, step_us = analyse(ks, 2, 'argmax_final', 'k_rope')
    want_step = (3000 + 2 * (2000 + 9000 + 4000) + 1000) / 1e3
    assert abs(step_us - want_step) < 1e-9, (step_us, want_step)
    assert rows[(1, 'k_skinny_ring', 1)][2] / rows[(1, 'k_skinny_ring', 1)][0] == 9.0
    assert rows[(1, 'k_skinny_ring', 1)][1] / rows[(1, 'k_skinny_ring', 1)][0] == 10.0
    assert rows[('pre', 'k_embed', 1)][0] == 2
    assert abs(groups['products'] / 2 - 18.0) < 1e-9
    assert abs(groups[STEP_START] / 2 - 3.0) < 1e-9
    assert abs(sum(groups.values()) / 2 - want_step) < 1e-9
    assert analyse(ks, 3, 'argmax_final', 'k_rope') is None
    assert short('_Z13k_skinny_wideILi1ELi4ELi1ELb1EEv8sk_partsif') == 'k_skinny_wide'
    print('steps.py self-test: ok')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('trace', nargs='?')
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--device', type=int, action='append')
    ap.add_argument('--step-end', default='argmax_final')
    ap.add_argument('--layer-mark', default='k_rope')
    ap.add_argument('--self-test', action='store_true')
    a = ap.parse_args()
    if a.self_test:
        self_test()
        return 0
    if not a.trace:
        ap.error('a trace file is needed')
    try:
        by_dev = read(a.trace)
    except KeyError as e:
        print(f'steps.py: {a.trace}: no column {e} (not a ci/trace/cutrace.c trace)',
              file=sys.stderr)
        return 1
    except (OSError, ValueError, csv.Error) as e:
        print(f'steps.py: {a.trace}: {e}', file=sys.stderr)
        return 1
    if not by_dev:
        print(f'steps.py: {a.trace}: no kernel records', file=sys.stderr)
        return 1
    report(by_dev, a.steps, a.step_end, a.layer_mark, a.device)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader (head, grep -m) stopped early
        sys.exit(0)

"""numba kernels of the solver: reachability, backward induction and sorted emission.

Layout. A trick-start ("boundary") state after k tricks has every player holding c = n - k
dominoes; it is indexed densely per level as ``(((r3*C + r2)*C + r1)*C + r0)*4 + leader`` where
``r_p`` is the rank of player p's mask among n-bit masks of popcount c and ``C = comb(n, c)``.
Mid-trick states hang off exactly one boundary state, so they are walked as a tree (at most
four plies) below their trick's start and never need deduplication.

Sorted output without a global sort. The 13 bits above the hand masks (leader, trick length,
plays) form a row's *header*. A mid-trick state's masks are its trick-start masks minus bits
fixed by the header, so inside one header rows sort exactly as their trick-start masks do.
Walking boundary states in ascending mask order (chunked by player 3's mask, the top 7 bits)
and appending each node to its header's bucket therefore writes every row straight into its
final sorted position. A forward pass counts rows per (chunk, header) to place the buckets.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from forge.oracle.rules import ILLEGAL_Q
from forge.oracle.state import (
    HAND_MASK,
    LEADER_SHIFT,
    MASK_BITS,
    NO_PLAY,
    PLAY_SHIFTS,
    STATE_BITS,
    TRICK_LEN_SHIFT,
)

HEADER_BITS = STATE_BITS - LEADER_SHIFT  # 13: leader, trick length, three plays
N_HEADERS = 1 << HEADER_BITS
# A header is a state shifted down by LEADER_SHIFT; these place its fields.
_TLEN_AT = TRICK_LEN_SHIFT - LEADER_SHIFT
_PLAY_AT = tuple(sh - LEADER_SHIFT for sh in PLAY_SHIFTS)
MASK_VALUES = 1 << MASK_BITS
ILLEGAL = ILLEGAL_Q


@nb.njit(cache=True, inline="always")
def _node_header(leader, tlen, a, b, c):
    return leader | (tlen << _TLEN_AT) | (a << _PLAY_AT[0]) | (b << _PLAY_AT[1]) | (c << _PLAY_AT[2])


@nb.njit(cache=True, inline="always")
def legal_mask(hand, follow):
    """The rule of play, once for every caller: the mover's held dominoes (``hand``, a local-index
    mask) that follow the led suit (``follow``: the mover's dominoes that do), or, when none does
    or nothing was led (``follow = 0``), every held domino. Callable from plain Python too."""
    legal = hand & follow
    return legal if legal != 0 else hand


@nb.njit(cache=True, inline="always")
def _pack_masks(m0, m1, m2, m3):
    m = np.int64(m0) | (np.int64(m1) << MASK_BITS)
    return m | (np.int64(m2) << (2 * MASK_BITS)) | (np.int64(m3) << (3 * MASK_BITS))


@nb.njit(cache=True, inline="always")
def _next_index(masks, winner, rank, cnext):
    r0 = rank[masks & HAND_MASK]
    r1 = rank[(masks >> MASK_BITS) & HAND_MASK]
    r2 = rank[(masks >> (2 * MASK_BITS)) & HAND_MASK]
    r3 = rank[(masks >> (3 * MASK_BITS)) & HAND_MASK]
    return (((r3 * cnext + r2) * cnext + r1) * cnext + r0) * 4 + winner


@nb.njit(cache=True, parallel=True)
def forward_level(c, masks_by_pop, comb, rank, reach_k, reach_next, hist, bit, led, follow, power):
    """Mark level k+1 boundary states reachable from level k; count rows per (m3, header)."""
    C = comb[c]
    cn = comb[c - 1]
    for r3 in nb.prange(C):
        m3 = masks_by_pop[c, r3]
        hrow = hist[m3]
        for r2 in range(C):
            m2 = masks_by_pop[c, r2]
            for r1 in range(C):
                m1 = masks_by_pop[c, r1]
                for r0 in range(C):
                    m0 = masks_by_pop[c, r0]
                    full = _pack_masks(m0, m1, m2, m3)
                    hands = (m0, m1, m2, m3)
                    base = (((r3 * C + r2) * C + r1) * C + r0) * 4
                    for ld in range(4):
                        if reach_k[base + ld] == 0:
                            continue
                        p1 = (ld + 1) & 3
                        p2 = (ld + 2) & 3
                        p3 = (ld + 3) & 3
                        hrow[_node_header(ld, 0, NO_PLAY, NO_PLAY, NO_PLAY)] += 1
                        h0 = hands[ld]
                        for i in range(7):
                            if not (h0 >> i) & 1:
                                continue
                            s = led[ld, i]
                            hrow[_node_header(ld, 1, i, NO_PLAY, NO_PLAY)] += 1
                            g1 = legal_mask(hands[p1], follow[p1, s])
                            for j in range(7):
                                if not (g1 >> j) & 1:
                                    continue
                                hrow[_node_header(ld, 2, i, j, NO_PLAY)] += 1
                                g2 = legal_mask(hands[p2], follow[p2, s])
                                for k in range(7):
                                    if not (g2 >> k) & 1:
                                        continue
                                    hrow[_node_header(ld, 3, i, j, k)] += 1
                                    g3 = legal_mask(hands[p3], follow[p3, s])
                                    before = full - bit[ld, i] - bit[p1, j] - bit[p2, k]
                                    b0 = power[ld, i, s]
                                    b1 = power[p1, j, s]
                                    b2 = power[p2, k, s]
                                    w = 0
                                    best = b0
                                    if b1 > best:
                                        best = b1
                                        w = 1
                                    if b2 > best:
                                        best = b2
                                        w = 2
                                    for q in range(7):
                                        if not (g3 >> q) & 1:
                                            continue
                                        ww = w
                                        if power[p3, q, s] > best:
                                            ww = 3
                                        nxt = _next_index(before - bit[p3, q], (ld + ww) & 3, rank, cn)
                                        reach_next[nxt] = 1


@nb.njit(cache=True)
def _better(a, b, maximize):
    return a > b if maximize else a < b


@nb.njit(cache=True, parallel=True)
def backward_level(
    c, masks_by_pop, comb, rank, reach_k, v_k, v_next, cursor, out_state, out_vq,
    bit, led, follow, power, points,
):
    """Solve level k from level k+1 values; write every row of level k's tricks in sorted place."""
    C = comb[c]
    cn = comb[c - 1] if c > 0 else 1
    for r3 in nb.prange(C):
        m3 = masks_by_pop[c, r3]
        cur = cursor[m3]
        for r2 in range(C):
            m2 = masks_by_pop[c, r2]
            for r1 in range(C):
                m1 = masks_by_pop[c, r1]
                for r0 in range(C):
                    m0 = masks_by_pop[c, r0]
                    full = _pack_masks(m0, m1, m2, m3)
                    hands = (m0, m1, m2, m3)
                    base = (((r3 * C + r2) * C + r1) * C + r0) * 4
                    for ld in range(4):
                        if reach_k[base + ld] == 0:
                            continue
                        hb = _node_header(ld, 0, NO_PLAY, NO_PLAY, NO_PLAY)
                        rb = cur[hb]
                        cur[hb] += 1
                        out_state[rb] = full | (np.int64(hb) << LEADER_SHIFT)
                        out_vq[rb, :] = ILLEGAL
                        if c == 0:
                            out_vq[rb, 0] = 0
                            v_k[base + ld] = 0
                            continue
                        p1 = (ld + 1) & 3
                        p2 = (ld + 2) & 3
                        p3 = (ld + 3) & 3
                        max0 = (ld & 1) == 0
                        max1 = (p1 & 1) == 0
                        vb = -1000 if max0 else 1000
                        h0 = hands[ld]
                        for i in range(7):
                            if not (h0 >> i) & 1:
                                continue
                            s = led[ld, i]
                            h1 = _node_header(ld, 1, i, NO_PLAY, NO_PLAY)
                            r1row = cur[h1]
                            cur[h1] += 1
                            s1 = full - bit[ld, i]
                            out_state[r1row] = s1 | (np.int64(h1) << LEADER_SHIFT)
                            out_vq[r1row, :] = ILLEGAL
                            v1 = -1000 if max1 else 1000
                            g1 = legal_mask(hands[p1], follow[p1, s])
                            for j in range(7):
                                if not (g1 >> j) & 1:
                                    continue
                                h2 = _node_header(ld, 2, i, j, NO_PLAY)
                                r2row = cur[h2]
                                cur[h2] += 1
                                s2 = s1 - bit[p1, j]
                                out_state[r2row] = s2 | (np.int64(h2) << LEADER_SHIFT)
                                out_vq[r2row, :] = ILLEGAL
                                v2 = -1000 if max0 else 1000
                                g2 = legal_mask(hands[p2], follow[p2, s])
                                for k in range(7):
                                    if not (g2 >> k) & 1:
                                        continue
                                    h3 = _node_header(ld, 3, i, j, k)
                                    r3row = cur[h3]
                                    cur[h3] += 1
                                    s3 = s2 - bit[p2, k]
                                    out_state[r3row] = s3 | (np.int64(h3) << LEADER_SHIFT)
                                    out_vq[r3row, :] = ILLEGAL
                                    v3 = -1000 if max1 else 1000
                                    g3 = legal_mask(hands[p3], follow[p3, s])
                                    b0 = power[ld, i, s]
                                    b1 = power[p1, j, s]
                                    b2 = power[p2, k, s]
                                    w = 0
                                    best = b0
                                    if b1 > best:
                                        best = b1
                                        w = 1
                                    if b2 > best:
                                        best = b2
                                        w = 2
                                    pts3 = 1 + points[ld, i] + points[p1, j] + points[p2, k]
                                    for q in range(7):
                                        if not (g3 >> q) & 1:
                                            continue
                                        ww = w
                                        if power[p3, q, s] > best:
                                            ww = 3
                                        winner = (ld + ww) & 3
                                        pts = pts3 + points[p3, q]
                                        nxt = _next_index(s3 - bit[p3, q], winner, rank, cn)
                                        val = np.int32(v_next[nxt]) + (pts if (winner & 1) == 0 else -pts)
                                        out_vq[r3row, 1 + q] = val
                                        if _better(val, v3, max1):
                                            v3 = val
                                    out_vq[r3row, 0] = v3
                                    out_vq[r2row, 1 + k] = v3
                                    if _better(v3, v2, max0):
                                        v2 = v3
                                out_vq[r2row, 0] = v2
                                out_vq[r1row, 1 + j] = v2
                                if _better(v2, v1, max1):
                                    v1 = v2
                            out_vq[r1row, 0] = v1
                            out_vq[rb, 1 + i] = v1
                            if _better(v1, vb, max0):
                                vb = v1
                        out_vq[rb, 0] = vb
                        v_k[base + ld] = vb


@nb.njit(cache=True, parallel=True)
def split_columns(vq, v_out, q_out):
    """Transpose the (N, 8) value rows into contiguous V and q0..q6 columns."""
    n = vq.shape[0]
    for r in nb.prange(n):
        v_out[r] = vq[r, 0]
        for i in range(7):
            q_out[i, r] = vq[r, 1 + i]

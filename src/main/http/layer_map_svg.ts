/**
 * The layer picture of a timeline (GET …/layer_map.svg), after Neon's `pagectl
 * draw-timeline`: one rectangle per layer, x = its key range, y = its LSN range (LSN grows
 * upwards), coloured by kind (L0 delta, L1 delta, image, in-memory); branch points (the
 * children's ancestor LSNs) and the GC cutoff as horizontal lines; labelled axes and a legend.
 *
 * Both axes are compressed to rank order, as Neon does: every distinct key boundary and every
 * distinct LSN (layer bounds, branch points, cutoff) gets the next slot, so a one-page image
 * layer is as visible as the whole key space, and a short L0 as a long one. Tick labels say
 * which LSN a slot is. Every layer rectangle has class "layer" and a <title> (its name, LSN
 * range and size) that viewers show on hover. The output is well-formed XML: every text is
 * escaped.
 */
import { assert } from "../../types/assert.js";
import { type Lsn, lsnToString, parseLsn } from "../../types/lsn.js";
import type { LayerInfo } from "./models.js";

export interface LayerMapPicture {
  title: string;
  layers: readonly LayerInfo[];
  /** Children's branch points on this timeline. */
  branchPoints: readonly { lsn: Lsn; label: string }[];
  gcCutoffLsn: Lsn;
}

/** Layers drawn at most (a timeline has far fewer; the bound keeps the reply bounded). */
export const MAX_DRAWN_LAYERS = 100_000;
const WIDTH = 1200;
const HEIGHT = 800;
const MARGIN_LEFT = 110;
const MARGIN_RIGHT = 220;
const MARGIN_TOP = 40;
const MARGIN_BOTTOM = 60;
const MAX_TICKS = 12;

export const LAYER_COLOURS = {
  l0: "#e8833a",
  l1: "#3a78c2",
  image: "#3faa55",
  in_memory: "#9e9e9e",
} as const;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

/** Sorted distinct values → their rank. */
function ranks<T>(values: Iterable<T>, cmp: (a: T, b: T) => number): Map<T, number> {
  const sorted = [...new Set(values)].sort(cmp);
  return new Map(sorted.map((v, i) => [v, i]));
}

function fmt(n: number): string {
  return n.toFixed(1);
}

export function layerMapSvg(p: LayerMapPicture): string {
  assert(p.layers.length <= MAX_DRAWN_LAYERS, "too many layers to draw");
  const parsed = p.layers.map((l) => ({ l, lsnStart: parseLsn(l.lsn_start), lsnEnd: parseLsn(l.lsn_end) }));
  const keyRank = ranks(
    parsed.flatMap((x) => [x.l.key_start, x.l.key_end]),
    (a, b) => (a < b ? -1 : a > b ? 1 : 0),
  );
  const lines = [
    ...p.branchPoints.map((b) => ({ lsn: b.lsn, label: b.label, cls: "branch" })),
    { lsn: p.gcCutoffLsn, label: `gc cutoff ${lsnToString(p.gcCutoffLsn)}`, cls: "gc" },
  ];
  const lsnRank = ranks([...parsed.flatMap((x) => [x.lsnStart, x.lsnEnd]), ...lines.map((x) => x.lsn)], (a, b) => a - b);
  const plotW = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
  const plotH = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
  const kSlots = Math.max(1, keyRank.size - 1);
  const lSlots = Math.max(1, lsnRank.size - 1);
  const x = (key: string): number => MARGIN_LEFT + (keyRank.get(key)! / kSlots) * plotW;
  const y = (lsn: Lsn): number => MARGIN_TOP + plotH - (lsnRank.get(lsn)! / lSlots) * plotH;

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<text x="${MARGIN_LEFT}" y="22" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  // Plot frame and axes.
  out.push(
    `<g class="axes" stroke="#333" fill="none"><line x1="${MARGIN_LEFT}" y1="${MARGIN_TOP + plotH}" x2="${MARGIN_LEFT + plotW}" y2="${MARGIN_TOP + plotH}"/><line x1="${MARGIN_LEFT}" y1="${MARGIN_TOP}" x2="${MARGIN_LEFT}" y2="${MARGIN_TOP + plotH}"/></g>`,
  );
  out.push(
    `<text x="${MARGIN_LEFT + plotW / 2}" y="${HEIGHT - 15}" text-anchor="middle">key range (rank order of layer key bounds: ${keyRank.size} distinct)</text>`,
  );
  out.push(
    `<text x="18" y="${MARGIN_TOP + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${MARGIN_TOP + plotH / 2})">LSN (rank order: ${lsnRank.size} distinct)</text>`,
  );
  const lsnsSorted = [...lsnRank.keys()];
  const step = Math.max(1, Math.ceil(lsnsSorted.length / MAX_TICKS));
  for (let i = 0; i < lsnsSorted.length; i += step) {
    const v = lsnsSorted[i]!;
    out.push(`<text class="tick" x="${MARGIN_LEFT - 6}" y="${fmt(y(v) + 4)}" text-anchor="end">${esc(lsnToString(v))}</text>`);
  }
  // Layers: images and deltas first, in-memory on top.
  const ordered = [...parsed].sort((a, b) => Number(a.l.in_memory !== null) - Number(b.l.in_memory !== null));
  for (const { l, lsnStart, lsnEnd } of ordered) {
    const colour = l.in_memory !== null ? LAYER_COLOURS.in_memory : LAYER_COLOURS[l.level];
    const x0 = x(l.key_start);
    const x1 = x(l.key_end);
    const yTop = y(lsnEnd);
    const yBottom = y(lsnStart);
    const w = Math.max(1, x1 - x0);
    const h = Math.max(2, yBottom - yTop);
    const dash = l.in_memory !== null ? ' stroke-dasharray="4 2"' : "";
    const what = l.in_memory !== null ? `${l.in_memory} in-memory layer` : `${l.level} ${l.kind}`;
    out.push(
      `<rect class="layer" data-level="${l.level}" x="${fmt(x0)}" y="${fmt(yTop)}" width="${fmt(w)}" height="${fmt(h)}" fill="${colour}" fill-opacity="0.6" stroke="#222" stroke-width="0.5"${dash}>` +
        `<title>${esc(`${what} ${l.name}\nLSN ${l.lsn_start} .. ${l.lsn_end}, ${l.size_bytes} bytes`)}</title></rect>`,
    );
  }
  // Branch points and the GC cutoff.
  for (const ln of lines) {
    const yy = fmt(y(ln.lsn));
    const colour = ln.cls === "gc" ? "#8e24aa" : "#d32f2f";
    out.push(
      `<g class="${ln.cls}"><line x1="${MARGIN_LEFT}" y1="${yy}" x2="${MARGIN_LEFT + plotW}" y2="${yy}" stroke="${colour}" stroke-width="1.5" stroke-dasharray="6 3"/>` +
        `<text x="${MARGIN_LEFT + plotW + 6}" y="${yy}" fill="${colour}">${esc(ln.label)}</text></g>`,
    );
  }
  // Legend.
  const legend: [string, string][] = [
    ["L0 delta", LAYER_COLOURS.l0],
    ["L1 delta", LAYER_COLOURS.l1],
    ["image", LAYER_COLOURS.image],
    ["in-memory", LAYER_COLOURS.in_memory],
  ];
  legend.forEach(([label, colour], i) => {
    const ly = MARGIN_TOP + plotH - 80 + i * 18;
    out.push(
      `<g class="legend"><rect class="legend" x="${MARGIN_LEFT + plotW + 10}" y="${ly}" width="12" height="12" fill="${colour}" fill-opacity="0.6"/><text x="${MARGIN_LEFT + plotW + 28}" y="${ly + 10}">${label}</text></g>`,
    );
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

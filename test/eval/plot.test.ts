// src/eval/plot.ts: the SVG is well-formed XML (a tag-stack check, entities only where allowed), the round ticks
// of known ranges (linear and log), compact number labels, escaping of < & " ', NaN and ≤ 0 (log) points as
// gaps, one point as a dot, empty panels saying "no data", every series in its panel's legend, the same bytes
// for the same spec, and data points at the pixels the axis mapping gives (read against the plot area's rect).
import { describe, expect, test } from "bun:test";
import { formatNumber, linePlotSvg, logTicks, niceTicks, PLOT_PALETTE, type PlotSpec } from "../../src/eval/index.ts";

/** Well-formedness, minimally: tags balance on a stack, attributes are quoted, text holds no raw < or bare &. */
function checkXml(svg: string): void {
  const stack: string[] = [];
  const tagRe = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let roots = 0;
  const checkText = (text: string, where: number) => {
    if (text.includes("<") || text.includes(">")) throw new Error(`raw < or > in text at ${where}: ${JSON.stringify(text.slice(0, 60))}`);
    const amp = text.replace(/&(amp|lt|gt|quot|#39);/g, "");
    if (amp.includes("&")) throw new Error(`bare & at ${where}: ${JSON.stringify(text.slice(0, 60))}`);
  };
  for (const m of svg.matchAll(tagRe)) {
    checkText(svg.slice(last, m.index), last);
    for (const a of m[3]!.matchAll(/="([^"]*)"/g)) checkText(a[1]!, m.index!);
    last = m.index! + m[0].length;
    const [close, name, , selfClose] = [m[1] === "/", m[2]!, m[3], m[4] === "/"];
    if (close) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}> at ${m.index}`);
    } else if (!selfClose) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) roots++;
  }
  checkText(svg.slice(last), last);
  if (stack.length) throw new Error(`unclosed: ${stack.join(" > ")}`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
}

const num = (s: string | undefined) => Number(s);

/** The plot area rects, in panel order. */
function plotAreas(svg: string): { x: number; y: number; w: number; h: number }[] {
  return [...svg.matchAll(/<rect class="plot-area" x="([^"]+)" y="([^"]+)" width="([^"]+)" height="([^"]+)"/g)].map((m) => ({
    x: num(m[1]),
    y: num(m[2]),
    w: num(m[3]),
    h: num(m[4]),
  }));
}

const polylines = (svg: string) => [...svg.matchAll(/<polyline points="([^"]+)"/g)].map((m) => m[1]!.split(" ").map((p) => p.split(",").map(Number)));

const base = (series: PlotSpec["panels"][number]["series"], extra: Partial<PlotSpec["panels"][number]> = {}): PlotSpec => ({
  title: "t",
  xLabel: "layer",
  panels: [{ yLabel: "y", series, ...extra }],
});

describe("ticks and numbers", () => {
  test("nice linear ticks for known ranges", () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3, 97)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 32)).toEqual([0, 5, 10, 15, 20, 25, 30, 35]);
    expect(niceTicks(0, 40)).toEqual([0, 10, 20, 30, 40]);
    expect(niceTicks(-0.37, 0.81)).toEqual([-0.4, -0.2, 0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.5, 0.5)).toEqual([0.44, 0.46, 0.48, 0.5, 0.52, 0.54, 0.56]); // one value: ±10%
    expect(niceTicks(0, 0)).toEqual([-1, -0.5, 0, 0.5, 1]);
    expect(niceTicks(1e-7, 5e-6)).toEqual([0, 1e-6, 2e-6, 3e-6, 4e-6, 5e-6]);
    for (const [lo, hi] of [[0, 1], [3, 97], [-5, 1234], [0.001, 0.0042], [17, 17.3]]) {
      const t = niceTicks(lo!, hi!);
      expect(t[0]!).toBeLessThanOrEqual(lo!);
      expect(t[t.length - 1]!).toBeGreaterThanOrEqual(hi!);
      const step = t[1]! - t[0]!;
      const mant = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
      expect([1, 2, 5].some((m) => Math.abs(mant - m) < 1e-6)).toBe(true);
      expect(t.length).toBeGreaterThanOrEqual(3);
      expect(t.length).toBeLessThanOrEqual(12);
    }
    expect(() => niceTicks(0, Number.NaN)).toThrow(/finite/);
  });

  test("log ticks are decades", () => {
    expect(logTicks(2e-6, 3e-3)).toEqual([1e-6, 1e-5, 1e-4, 1e-3, 1e-2]);
    expect(logTicks(2, 8)).toEqual([1, 10]);
    expect(logTicks(1, 100)).toEqual([1, 10, 100]);
    expect(logTicks(1e-12, 1)).toEqual([1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1]);
    expect(() => logTicks(0, 1)).toThrow(/positive/);
  });

  test("compact labels", () => {
    const cases: [number, string][] = [
      [0, "0"], [-0, "0"], [1e-6, "1e-6"], [2.5e-7, "2.5e-7"], [0.001, "0.001"], [0.2, "0.2"], [0.6000000000000001, "0.6"],
      [3.14159, "3.142"], [97, "97"], [-40, "-40"], [2000, "2k"], [1500, "1.5k"], [12345, "12.35k"], [999.99, "1k"],
      [2.5e7, "2.5e7"], [1e6, "1e6"], [Number.NaN, "NaN"], [Infinity, "inf"],
    ];
    for (const [v, s] of cases) expect(formatNumber(v), String(v)).toBe(s);
  });
});

describe("linePlotSvg", () => {
  const spec: PlotSpec = {
    title: "Alignment <by> layer & \"language\"",
    xLabel: "layer",
    panels: [
      {
        yLabel: "retrieval top-1",
        series: [
          { name: "de→en", points: [[0, 0.1], [1, 0.5], [2, 0.9], [3, 0.7]] },
          { name: "zh→en", points: [[0, 0.05], [1, Number.NaN], [2, 0.6], [3, 0.4]] },
          { name: "random", points: [[0, 0.01], [1, 0.01], [2, 0.01], [3, 0.01]], dashed: true },
        ],
        markers: [{ x: 2, label: "align layer" }],
      },
      {
        yLabel: "loss",
        logY: true,
        series: [
          { name: "de→en", points: [[0, 1e-3], [1, 0], [2, 1e-5], [3, 1e-6]] },
          { name: "solo", points: [[1.5, 0.01]] },
        ],
      },
    ],
  };

  test("well-formed, escaped, deterministic", () => {
    const svg = linePlotSvg(spec);
    checkXml(svg);
    expect(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\"")).toBe(true);
    expect(svg).toContain("Alignment &lt;by&gt; layer &amp; &quot;language&quot;");
    expect(svg).not.toContain("<by>");
    expect(linePlotSvg(structuredClone(spec))).toBe(svg); // same input → same bytes
    const names = linePlotSvg(base([{ name: `a<b & "c" 'd'`, points: [[0, 1], [1, 2]] }]));
    checkXml(names);
    expect(names).toContain("a&lt;b &amp; &quot;c&quot; &#39;d&#39;");
  });

  test("legend names, stable colours, markers, ticks", () => {
    const svg = linePlotSvg(spec);
    const legend = [...svg.matchAll(/<text class="legend"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(legend).toEqual(["de→en", "zh→en", "random", "de→en", "solo"]);
    // A name keeps its colour in every panel: de→en is the first colour in both.
    const de = [...svg.matchAll(/<g class="series" data-name="de→en">\n<(?:polyline[^>]*stroke|circle[^>]*fill)="([^"]+)"/g)].map((m) => m[1]);
    expect(de).toEqual([PLOT_PALETTE[0], PLOT_PALETTE[0]]);
    expect(svg).toContain(`stroke="${PLOT_PALETTE[2]}" stroke-width="1.8" stroke-dasharray="6 4"`); // "random" dashed
    expect(svg).toContain(">align layer</text>");
    expect(svg.match(/class="marker"/g)).toHaveLength(1);
    // Log panel's y ticks: decades over 1e-6 .. 1e-2.
    for (const t of ["1e-6", "1e-5", "1e-4", "0.001", "0.01"]) expect(svg).toContain(`>${t}</text>`);
  });

  test("non-finite points and y ≤ 0 on a log axis are gaps; a single point is a dot", () => {
    const svg = linePlotSvg(spec);
    const lines = polylines(svg);
    // Panel 1: de→en (4 points), zh→en split by its NaN into a dot [0] and a run [2, 3], random (4 points).
    // Panel 2: de→en split by y = 0 into a dot [0] and a run [2, 3]; "solo" a dot.
    expect(lines.map((l) => l.length)).toEqual([4, 2, 4, 2]);
    expect(svg.match(/<circle /g)).toHaveLength(3);
    for (const l of lines) for (const p of l) expect(p.every(Number.isFinite)).toBe(true);
    expect(svg).not.toContain("NaN");
    // All-NaN and empty panels draw "no data" and do not throw.
    const empty = linePlotSvg({
      title: "e",
      xLabel: "x",
      panels: [{ yLabel: "a", series: [{ name: "nan", points: [[0, Number.NaN], [Infinity, 1]] }] }, { yLabel: "b", series: [] }],
    });
    checkXml(empty);
    expect(empty.match(/>no data</g)).toHaveLength(2);
    expect(empty).toContain(">nan</text>");
    expect(() => linePlotSvg({ title: "x", xLabel: "x", panels: [] })).toThrow(/at least one panel/);
    expect(() => linePlotSvg(base([{ name: "bad", points: [[1, 2, 3] as unknown as [number, number]] }]))).toThrow(/series "bad", point 0/);
  });

  test("points map into the plot area by the axis mapping", () => {
    // x 0..1, y 0..1: ticks are exactly the data range, so the points are the plot area's corners.
    const svg = linePlotSvg(base([{ name: "s", points: [[0, 0], [1, 1]] }]));
    const [a] = plotAreas(svg);
    expect(a).toBeDefined();
    expect(polylines(svg)).toEqual([[[a!.x, a!.y + a!.h], [a!.x + a!.w, a!.y]]]);
    // x 3..97 → axis 0..100; y 0.25..0.75 → axis 0.2..0.8.
    const svg2 = linePlotSvg(base([{ name: "s", points: [[3, 0.25], [97, 0.75]] }]));
    const [b] = plotAreas(svg2);
    const X = (x: number) => Number((b!.x + (x / 100) * b!.w).toFixed(2));
    const Y = (y: number) => Number((b!.y + b!.h - ((y - 0.2) / 0.6) * b!.h).toFixed(2));
    const [line] = polylines(svg2);
    expect(line).toHaveLength(2);
    expect(line![0]![0]).toBeCloseTo(X(3), 2);
    expect(line![0]![1]).toBeCloseTo(Y(0.25), 2);
    expect(line![1]![0]).toBeCloseTo(X(97), 2);
    expect(line![1]![1]).toBeCloseTo(Y(0.75), 2);
    // Every drawn coordinate lies inside its panel's plot area (with the shared x axis over two panels).
    const two = linePlotSvg(spec);
    const areas = plotAreas(two);
    expect(areas).toHaveLength(2);
    expect(areas[1]!.y).toBeGreaterThan(areas[0]!.y + areas[0]!.h);
    expect(areas[0]!.x).toBe(areas[1]!.x);
    const panels = two.split(`<g class="panel"`).slice(1);
    panels.forEach((p, i) => {
      const r = areas[i]!;
      const pts = [...polylines(p).flat(), ...[...p.matchAll(/<circle cx="([^"]+)" cy="([^"]+)"/g)].map((m) => [num(m[1]), num(m[2])])];
      expect(pts.length).toBeGreaterThan(0);
      for (const [x, y] of pts) {
        expect(x!).toBeGreaterThanOrEqual(r.x - 1e-9);
        expect(x!).toBeLessThanOrEqual(r.x + r.w + 1e-9);
        expect(y!).toBeGreaterThanOrEqual(r.y - 1e-9);
        expect(y!).toBeLessThanOrEqual(r.y + r.h + 1e-9);
      }
    });
  });
});

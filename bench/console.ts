// Issue 6's benchmark: the console in Debian's Chromium against a Spindle with its simulator on
// (20 machines, 5 axes, a sample per axis every 100 ms). Each figure beside a baseline from the
// same run: first paint of the fleet beside a static page of as many bytes, with 20 tiles, served
// by the same server; the bundle beside its two libraries alone; the main thread's busy share
// while the machine page plots 5 axes live beside the same page paused.
import { execFileSync } from "node:child_process";
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { type Browser, chromium, type Page } from "playwright-core";
import { benchAdmin, fixed, freshTarget, provision, ratio, startSpindle } from "./lib.ts";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "web", "dist");
const chromiumPath = "/usr/bin/chromium";
const tiles = 20;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

async function bundleSizes() {
  const assets = join(dist, "assets");
  let js = 0;
  let css = 0;
  let jsRaw = 0;
  for (const name of await readdir(assets)) {
    if (name.endsWith(".js.gz")) js += (await stat(join(assets, name))).size;
    if (name.endsWith(".css.gz")) css += (await stat(join(assets, name))).size;
    if (name.endsWith(".js")) jsRaw += (await stat(join(assets, name))).size;
  }
  const libraries = Buffer.concat([
    await readFile(join(root, "node_modules/preact/dist/preact.mjs")),
    await readFile(join(root, "node_modules/preact/hooks/dist/hooks.mjs")),
    await readFile(join(root, "node_modules/uplot/dist/uPlot.iife.min.js")),
  ]);
  return { js, css, jsRaw, libraries: gzipSync(libraries, { level: 9 }).length };
}

/** A page with 20 tiles' worth of markup in the app's CSS, padded to the bundle's size. */
function staticFleetPage(css: string, bytes: number): string {
  const tile = (i: number) =>
    `<li class="tile"><div class="tile-head"><span class="tile-name">Machine ${i}</span>` +
    `<span class="pill pill-running">Running</span></div><dl class="axes">` +
    ["X", "Y", "Z", "A", "C"]
      .map((a) => `<div class="axis"><dt>${a}</dt><dd>12.3</dd></div>`)
      .join("") +
    `</dl></li>`;
  const body = `<!doctype html><html><head><meta charset="utf-8"><style>${css}</style></head><body><main>
<ul class="fleet-grid" style="position:static;grid-template-columns:repeat(5,1fr);gap:16px;grid-auto-rows:192px">
${Array.from({ length: tiles }, (_, i) => tile(i + 1)).join("")}</ul></main>`;
  const padding = Math.max(0, bytes - body.length - 30);
  return `${body}<!-- ${"x".repeat(padding)} --></body></html>`;
}

/**
 * Milliseconds from navigation start until `count` tiles are on screen, each showing positions
 * when `positions` (the live snapshot has arrived), measured in the page after the next frame.
 */
async function timeToTiles(page: Page, url: string, positions: boolean): Promise<number> {
  await page.goto(url, { waitUntil: "commit" });
  // A string, not a function: tsx would wrap a function's inner arrows in a helper the page lacks.
  return page.evaluate<number>(`new Promise((resolve) => {
    const ready = () => {
      if (document.querySelectorAll(".tile").length < ${tiles}) return false;
      if (!${positions}) return true;
      return [...document.querySelectorAll(".tile dd")].every((d) => d.textContent !== "—");
    };
    const check = () => {
      if (ready()) requestAnimationFrame(() => resolve(performance.now()));
      else requestAnimationFrame(check);
    };
    check();
  })`);
}

/** Main-thread task time per wall-clock second (Chrome's own `TaskDuration`), over `seconds`. */
async function busyShare(page: Page, seconds: number): Promise<{ busy: number; frames: number }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const metric = async () => {
    const { metrics } = await cdp.send("Performance.getMetrics");
    return metrics.find((m) => m.name === "TaskDuration")!.value;
  };
  const framesBefore = await page.evaluate(
    () => (window as { benchFrames?: number }).benchFrames ?? 0,
  );
  const before = await metric();
  const started = Date.now();
  await page.waitForTimeout(seconds * 1000);
  const busy = (await metric()) - before;
  const wall = (Date.now() - started) / 1000;
  const framesAfter = await page.evaluate(
    () => (window as { benchFrames?: number }).benchFrames ?? 0,
  );
  await cdp.detach();
  return { busy: busy / wall, frames: (framesAfter - framesBefore) / wall };
}

async function signIn(page: Page, base: string) {
  await page.goto(`${base}/`);
  await page.getByLabel("Username").fill(benchAdmin.username);
  await page.getByLabel("Password").fill(benchAdmin.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

export async function benchConsole({ seconds = 10, runs = 5 } = {}): Promise<string> {
  execFileSync(process.execPath, ["web/build.mjs"], { cwd: root, stdio: "inherit" });
  const sizes = await bundleSizes();
  const target = await freshTarget("embedded");
  await provision(target);
  const server = await startSpindle(target, { SIMULATOR: "on", SIMULATOR_MACHINES: String(tiles) });
  const staticName = `bench-static-${process.pid}.html`;
  const staticFile = join(dist, "assets", staticName);
  let browser: Browser | undefined;
  try {
    const cssName = (await readdir(join(dist, "assets"))).find((name) => name.endsWith(".css"));
    const css = cssName ? await readFile(join(dist, "assets", cssName), "utf8") : "";
    await writeFile(staticFile, staticFleetPage(css, sizes.jsRaw));

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
    });
    // Wide enough that all 20 tiles are on screen (the list renders only what is).
    const context = await browser.newContext({ viewport: { width: 1920, height: 1400 } });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    await signIn(page, server.url);
    await timeToTiles(page, `${server.url}/`, true);
    const fleet: number[] = [];
    const bare: number[] = [];
    for (let run = 0; run < runs; run++) {
      // Warm caches both ways: a returning user's reload, the static page's second load.
      fleet.push(await timeToTiles(page, `${server.url}/`, true));
      bare.push(await timeToTiles(page, `${server.url}/assets/${staticName}`, false));
    }

    // The machine page plotting 5 axes live; frames counted where uPlot redraws its canvases.
    const machine = await page.evaluate(async () => {
      const session = JSON.parse(sessionStorage.getItem("spindle.session") ?? "{}");
      const answer = await fetch("/data/machines/?limit=1", {
        headers: { authorization: `Bearer ${session.access}` },
      });
      return ((await answer.json()) as { machine_id: number }[])[0]!.machine_id;
    });
    await page.goto(`${server.url}/machines/${machine}`);
    await page.waitForFunction(() => document.querySelectorAll(".uplot").length === 5);
    // A frame counts when uPlot cleared a canvas in it: it redrew a chart.
    await page.evaluate(`(() => {
      window.benchFrames = 0;
      let drawn = false;
      const clear = CanvasRenderingContext2D.prototype.clearRect;
      CanvasRenderingContext2D.prototype.clearRect = function (...args) {
        drawn = true;
        return clear.apply(this, args);
      };
      const count = () => {
        if (drawn) window.benchFrames++;
        drawn = false;
        requestAnimationFrame(count);
      };
      requestAnimationFrame(count);
    })()`);
    await page.waitForTimeout(2000);
    const live = await busyShare(page, seconds);
    await page.getByRole("button", { name: "Pause" }).click();
    await page.waitForTimeout(1000);
    const paused = await busyShare(page, seconds);

    const kb = (bytes: number) => `${fixed(bytes / 1024, 1)} KB`;
    const pct = (share: number) => `${fixed(share * 100, 1)} %`;
    const lines = [
      "| measure | console | baseline | ratio | goal |",
      "| --- | --- | --- | --- | --- |",
      `| fleet overview, first meaningful paint (20 tiles with positions; median of ${runs} reloads) | ${fixed(median(fleet), 0)} ms | ${fixed(median(bare), 0)} ms (static page of ${kb(sizes.jsRaw)} with 20 tiles, same server) | ${fixed(ratio(median(fleet), median(bare)))}× | < 1000 ms |`,
      `| JavaScript bundle, gzip | ${kb(sizes.js)} (+ ${kb(sizes.css)} CSS) | ${kb(sizes.libraries)} (Preact + hooks + uPlot alone) | ${fixed(ratio(sizes.js, sizes.libraries))}× | < 250 KB |`,
      `| main thread busy, machine page plotting 5 axes live (${seconds} s) | ${pct(live.busy)} | ${pct(paused.busy)} (same page paused) | ${fixed(ratio(live.busy, paused.busy))}× | < 25 % |`,
      `| chart redraws per second on that page | ${fixed(live.frames, 1)} | ${fixed(paused.frames, 1)} (paused) | | ≥ 10 |`,
    ];
    return `Chromium ${browser.version()} headless, ${tiles} simulated machines (SIMULATOR=on), embedded database.\n\n${lines.join("\n")}`;
  } finally {
    await browser?.close();
    await rm(staticFile, { force: true });
    await server.stop();
    await target.cleanup();
  }
}

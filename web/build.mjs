#!/usr/bin/env node
// Builds the console into web/dist unless it is already newer than its sources (so `npm start`
// and `npm test` stay fast), into a fresh directory swapped in at the end, so a server that is
// serving web/dist never sees half a build. `--force` rebuilds anyway.
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const web = fileURLToPath(new URL(".", import.meta.url));
const dist = join(web, "dist");
const stamp = join(dist, ".built");
const lock = join(web, ".build-lock");
const sources = [join(web, "src"), join(web, "index.html"), join(web, "vite.config.ts")];
const force = process.argv.includes("--force");

async function newestMtime(path) {
  const info = await stat(path);
  if (!info.isDirectory()) return info.mtimeMs;
  let newest = info.mtimeMs;
  for (const entry of await readdir(path)) {
    newest = Math.max(newest, await newestMtime(join(path, entry)));
  }
  return newest;
}

async function upToDate() {
  const built = await stat(stamp).then(
    (info) => info.mtimeMs,
    () => 0,
  );
  if (built === 0) return false;
  const versions = join(web, "..", "package-lock.json");
  const inputs = [...sources, versions];
  let newest = 0;
  for (const input of inputs) newest = Math.max(newest, await newestMtime(input).catch(() => 0));
  return built > newest;
}

/** One build at a time in this tree; a second caller waits for it, then finds it fresh. */
async function withLock(work) {
  const started = Date.now();
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      const age = await stat(lock).then(
        (info) => Date.now() - info.mtimeMs,
        () => 0,
      );
      if (age > 120_000) await rm(lock, { recursive: true, force: true });
      else if (Date.now() - started > 180_000)
        throw new Error(`${lock} is held; remove it if no build runs`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await work();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

async function compressAssets(dir) {
  let gzipTotal = 0;
  for (const name of await readdir(dir)) {
    if (!/\.(js|css|svg|html)$/.test(name)) continue;
    const bytes = await readFile(join(dir, name));
    const gz = gzipSync(bytes, { level: 9 });
    gzipTotal += gz.length;
    await writeFile(join(dir, `${name}.gz`), gz);
    await writeFile(
      join(dir, `${name}.br`),
      brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
    );
  }
  return gzipTotal;
}

async function buildConsole() {
  if (!force && (await upToDate())) return;
  const { build } = await import("vite");
  const out = join(web, `.dist-${process.pid}`);
  const started = Date.now();
  await build({
    configFile: join(web, "vite.config.ts"),
    logLevel: "warn",
    build: { outDir: out, emptyOutDir: true },
  });
  const gzip = await compressAssets(join(out, "assets"));
  await writeFile(join(out, ".built"), new Date().toISOString());
  const old = join(web, `.dist-old-${process.pid}`);
  await rename(dist, old).catch(() => {});
  await rename(out, dist);
  await rm(old, { recursive: true, force: true });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`console built into web/dist in ${seconds} s (${(gzip / 1024).toFixed(1)} KB gzip)`);
}

await withLock(buildConsole);

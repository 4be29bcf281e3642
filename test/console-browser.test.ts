import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import {
  type Browser,
  type BrowserContext,
  chromium,
  type Page,
  type Request,
} from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consoleClient, ensureConsoleClient } from "../src/features/console/console-client.ts";
import { createHistoryService } from "../src/features/history/history-service.ts";
import { buildTestApp, type TestApp, testPassword, uniqueName } from "./helpers/app.ts";
import { nextMachineId } from "./helpers/factories.ts";

// The console as people use it: a real Spindle on a real port, Debian's Chromium, the built app.
const chromiumPath = "/usr/bin/chromium";
const repository = new URL("..", import.meta.url).pathname;
const screenshots = new URL("../test-results/console/", import.meta.url).pathname;
const axisNames = ["X", "Y", "Z", "A", "C"];
const lanHost = "spindle-lan.test";

let t: TestApp;
let base: string;
let browser: Browser;
const fleet: { machine_id: number; machine_name: string }[] = [];
const people: Record<"manager" | "admin" | "operator" | "supervisor", string> = {
  manager: "",
  admin: "",
  operator: "",
  supervisor: "",
};

async function arrange(url: string, payload: unknown) {
  const answer = await t.inject({
    method: "POST",
    url,
    headers: t.adminAuth,
    payload: payload as object,
  });
  if (answer.statusCode >= 300) throw new Error(`POST ${url}: ${answer.statusCode} ${answer.body}`);
  return answer.json();
}

/** Samples for every axis of these machines at the time of receipt, through the ingest path. */
async function ingestSamples(machines: number[], step: number, timestamp?: string) {
  const axisData = machines.flatMap((machine, m) =>
    axisNames.map((axis_name, a) => ({
      machine_id: machine,
      axis_name,
      actual_position:
        Math.round((100 * Math.sin((m % 4 === 1 ? 0 : step / 3) + m + a) + a * 10) * 1000) / 1000,
      // Every fourth machine stands still at its target: idle.
      target_position:
        m % 4 === 1
          ? Math.round((100 * Math.sin(m + a) + a * 10) * 1000) / 1000
          : Math.round((100 * Math.sin((step + 1) / 3 + m + a) + a * 10) * 1000) / 1000,
      homed: !(m === 3),
      acceleration: m % 4 === 1 ? 0 : 120 * Math.cos(step + a),
      velocity: m % 4 === 1 ? 0 : 40 + 30 * Math.sin(step / 2 + m + a),
      ...(timestamp ? { timestamp } : {}),
    })),
  );
  const answer = await t.inject({
    method: "POST",
    url: "/api/ingest/",
    headers: t.adminAuth,
    payload: { axis_data: axisData },
  });
  if (answer.statusCode !== 202) throw new Error(`ingest: ${answer.statusCode} ${answer.body}`);
}

/**
 * Holds the page's requests to `url` (those of `method`, if given) until the test lets each go
 * (`held.shift()!()`), so it can look at the page while they are out; `seen` lists their URLs.
 */
async function holdRequests(page: Page, url: RegExp, method?: string) {
  const held: (() => void)[] = [];
  const seen: string[] = [];
  await page.route(url, (route) => {
    if (method !== undefined && route.request().method() !== method) return route.continue();
    seen.push(route.request().url());
    return new Promise<void>((resolve) => held.push(resolve)).then(() => route.continue());
  });
  return { held, seen };
}

/** What has the keyboard's focus: "body", or an element's tag and its name or text. */
const focusedElement = (page: Page) =>
  page.evaluate(() => {
    const element = document.activeElement;
    if (!element || element === document.body) return "body";
    return `${element.tagName.toLowerCase()} ${element.getAttribute("name") ?? element.textContent?.trim()}`;
  });

async function newPage(options: { dark?: boolean; width?: number; height?: number } = {}) {
  const context: BrowserContext = await browser.newContext({
    viewport: { width: options.width ?? 1366, height: options.height ?? 900 },
    colorScheme: options.dark ? "dark" : "light",
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  return page;
}

async function signIn(page: Page, username: string, origin = base) {
  await page.goto(`${origin}/`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(testPassword);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

/** A second tab opened from this one, as a ctrl-click does: same browser, its storage copied. */
async function openTab(page: Page): Promise<Page> {
  const [tab] = await Promise.all([
    page.context().waitForEvent("page"),
    page.evaluate(() => {
      window.open(location.href);
    }),
  ]);
  tab.setDefaultTimeout(15_000);
  return tab;
}

/** The tokens the console keeps for the browser's tabs. */
async function storedTokens(page: Page): Promise<{ access: string; refresh: string } | null> {
  return JSON.parse((await page.evaluate(() => localStorage.getItem("spindle.session"))) ?? "null");
}

/** Whether Spindle still takes this token (a refresh token used twice revokes its family). */
async function tokenActive(token: string): Promise<boolean> {
  const answer = await t.inject({
    method: "POST",
    url: "/o/introspect/",
    headers: t.adminAuth,
    payload: { token },
  });
  return (answer.json() as { active: boolean }).active;
}

/** One axis sample of one machine, at the time of receipt; still and homed unless told. */
async function ingestOne(sample: {
  machine_id: number;
  axis_name: string;
  actual_position: number;
  target_position?: number;
  velocity?: number;
}) {
  const answer = await t.inject({
    method: "POST",
    url: "/api/ingest/",
    headers: t.adminAuth,
    payload: {
      axis_data: [
        {
          target_position: sample.actual_position,
          homed: true,
          acceleration: 0,
          velocity: 0,
          ...sample,
        },
      ],
    },
  });
  if (answer.statusCode !== 202) throw new Error(`ingest: ${answer.statusCode} ${answer.body}`);
}

/** Revokes the access token the page holds, as another session of the same user could. */
async function revokeAccessToken(page: Page): Promise<string> {
  const stored = await page.evaluate(() => localStorage.getItem("spindle.session"));
  const { access } = JSON.parse(stored ?? "{}") as { access: string };
  await t.inject({
    method: "POST",
    url: "/o/revoke_token/",
    payload: { token: access, client_id: consoleClient.clientId },
  });
  return access;
}

/**
 * What goes wrong while the page is open: requests that fail or are answered 4xx/5xx, errors in
 * its console. (A reload cancelling what the page before it still had out is not a failure.)
 */
function watchFailures(page: Page): string[] {
  const failures: string[] = [];
  page.on("response", (response) => {
    if (response.status() >= 400)
      failures.push(`${response.status()} ${response.request().method()} ${response.url()}`);
  });
  page.on("requestfailed", (request) => {
    const reason = request.failure()?.errorText;
    if (reason !== "net::ERR_ABORTED")
      failures.push(`${reason} ${request.method()} ${request.url()}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error") failures.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => failures.push(`page error: ${error.message}`));
  return failures;
}

/** The administration sections the page lists. */
const adminSections = (page: Page) =>
  page.getByRole("navigation", { name: "Administration" }).getByRole("link").allTextContents();

/** The whole page, or (for the virtualized fleet) what is on screen. */
const shot = (page: Page, name: string, fullPage = true) =>
  page.screenshot({ path: `${screenshots}${name}.png`, fullPage });

describe.skipIf(!existsSync(chromiumPath))("the web console in Chromium", () => {
  beforeAll(async () => {
    // `npm test` builds the console first; this covers running vitest directly.
    execFileSync(process.execPath, ["web/build.mjs"], { cwd: repository, stdio: "inherit" });
    await mkdir(screenshots, { recursive: true });
    t = await buildTestApp();
    await ensureConsoleClient(t.services.oauth);
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;

    for (const [role, group] of [
      ["manager", "Manager"],
      ["admin", "Admin"],
      ["operator", "Operator"],
      ["supervisor", "Supervisor"],
    ] as const) {
      people[role] = uniqueName(role);
      await t.services.users.createUser({ username: people[role], password: testPassword }, [
        group,
      ]);
    }

    const models = ["DMU 50", "DMC 65 H", "NLX 2500", "Integrex i-200", "VF-2SS"];
    for (let i = 0; i < 20; i++) {
      const machine_id = nextMachineId();
      const machine_name = `${models[i % models.length]} #${String(i + 1).padStart(2, "0")}`;
      await arrange("/data/machines/", {
        machine_id,
        machine_name,
        tool_capacity: 24 + (i % 3) * 12,
      });
      for (const axis_name of axisNames) {
        await arrange("/data/axes/", {
          machine: machine_id,
          axis_name,
          max_acceleration: 2000,
          max_velocity: 500,
        });
      }
      const tool = await arrange("/data/tools/", {
        machine: machine_id,
        tool_offset: 100 + i,
        feedrate: 1200,
      });
      await arrange("/data/tool-usage/", { machine: machine_id, tool_in_use: tool.tool_id });
      fleet.push({ machine_id, machine_name });
    }
    // Five minutes of history, a sample every 5 s, then the newest at the time of receipt.
    const machineIds = fleet.map((machine) => machine.machine_id);
    const started = Date.now() - 5 * 60_000;
    for (let step = 0; step < 60; step++) {
      await ingestSamples(machineIds, step, new Date(started + step * 5000).toISOString());
    }
    await ingestSamples(machineIds, 60);

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // An address that is not loopback, so plain http there is not a secure context (no
        // Web Locks), as on a LAN address; it reaches this test's server all the same.
        `--host-resolver-rules=MAP ${lanHost} 127.0.0.1`,
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("signs a Manager in and shows the fleet: 20 machines with positions, tools and status", async () => {
    const page = await newPage();
    await page.goto(`${base}/`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("Username").fill(people.manager);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Wrong username or password.").waitFor();
    await shot(page, "sign-in-error");

    await page.getByLabel("Password").fill(testPassword);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Fleet" }).waitFor();
    await page.getByText("20 machines", { exact: false }).first().waitFor();
    const first = page.getByRole("link", {
      name: new RegExp(`^${fleet[0]!.machine_name}, Running`),
    });
    await first.waitFor();
    await expect(first.textContent()).resolves.toMatch(/T\d+ in use/);
    await page
      .getByRole("link", { name: /, Not homed$/ })
      .first()
      .waitFor();
    await page
      .getByRole("link", { name: /, Idle$/ })
      .first()
      .waitFor();
    // A Manager administers machines, axes and tools (below).
    await page.getByRole("link", { name: "Administration" }).waitFor();
    await page.waitForTimeout(2500); // a second poll, so sparklines have a trend
    await shot(page, "fleet", false);

    // Filter and sort.
    await page.getByLabel("Filter").fill("NLX");
    await expect.poll(() => page.locator(".tile").count()).toBe(4);
    await page.getByLabel("Filter").fill("");
    await page.getByLabel("Sort by").selectOption("status");
    await expect.poll(() => page.locator(".tile .pill").first().textContent()).toMatch(/Running/i);
    await page.context().close();
  });

  it("is readable at tablet width and in dark mode", async () => {
    const tablet = await newPage({ width: 820, height: 1180 });
    await signIn(tablet, people.manager);
    await tablet.locator(".tile").first().waitFor();
    await tablet.waitForTimeout(2500);
    await shot(tablet, "fleet-tablet", false);
    await tablet.context().close();

    const dark = await newPage({ dark: true });
    await signIn(dark, people.manager);
    await dark.locator(".tile").first().waitFor();
    await dark.waitForTimeout(2500);
    await shot(dark, "fleet-dark", false);
    await dark.goto(`${base}/machines/${fleet[0]!.machine_id}`);
    await dark.locator(".uplot").first().waitFor();
    await shot(dark, "machine-dark");
    await dark.context().close();
  });

  it("fits a phone's width (390 px) on every page: nothing scrolls sideways", async () => {
    const page = await newPage({ width: 390, height: 844 });
    await signIn(page, people.admin);
    const paths = [
      "/",
      `/machines/${fleet[0]!.machine_id}`,
      "/history",
      "/account",
      "/admin/users",
      "/admin/groups",
      "/admin/clients",
      "/admin/machines",
      "/admin/axes",
      "/admin/tools",
    ];
    const wide: string[] = [];
    for (const path of paths) {
      await page.goto(`${base}${path}`);
      await page.locator("main h1, main h2").first().waitFor();
      await page.locator(".loading").waitFor({ state: "detached" });
      await page.waitForTimeout(300);
      const { scrollWidth, innerWidth, offenders } = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        innerWidth: window.innerWidth,
        // Named in the failure, to say what to fix.
        offenders: [...document.querySelectorAll("body *")]
          .filter((element) => {
            if (element.getBoundingClientRect().right <= window.innerWidth + 1) return false;
            for (let up = element.parentElement; up; up = up.parentElement)
              if (getComputedStyle(up).overflowX !== "visible") return false;
            return true;
          })
          .slice(0, 3)
          .map((element) => `${element.tagName.toLowerCase()}.${[...element.classList].join(".")}`),
      }));
      if (scrollWidth > innerWidth) wide.push(`${path}: ${scrollWidth} px (${offenders})`);
    }
    await shot(page, "phone-admin-tools");
    expect(wide).toEqual([]);
    const signOut = (await page.getByRole("button", { name: "Sign out" }).boundingBox())!;
    expect(signOut.x + signOut.width).toBeLessThanOrEqual(390);
    await page.context().close();
  });

  it("gives the status pills and notices 4.5:1 contrast, light and dark", async () => {
    for (const dark of [false, true]) {
      const page = await newPage({ dark });
      await signIn(page, people.manager);
      await page.locator(".tile").first().waitFor();
      const contrasts = await page.evaluate(() => {
        const luminance = (color: string) => {
          const [r, g, b] = color
            .match(/[\d.]+/g)!
            .slice(0, 3)
            .map((c) => {
              const v = Number(c) / 255;
              return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            }) as [number, number, number];
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const classes = ["running", "idle", "not-homed", "stale", "no-data"].map(
          (s) => `pill pill-${s}`,
        );
        classes.push("notice notice-success", "notice notice-error", "notice notice-info");
        return classes.map((className) => {
          const element = document.createElement("span");
          element.className = className;
          element.textContent = "Running";
          document.querySelector("main")!.append(element);
          const style = getComputedStyle(element);
          const [a, b] = [luminance(style.color), luminance(style.backgroundColor)];
          element.remove();
          return `${className} ${Math.round(((Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)) * 100) / 100}`;
        });
      });
      for (const contrast of contrasts) {
        expect(
          Number(contrast.split(" ").at(-1)),
          `${dark ? "dark" : "light"}: ${contrast}`,
        ).toBeGreaterThanOrEqual(4.5);
      }
      await page.context().close();
    }
  });

  it("opens a machine's page: latest values per axis and a chart per axis that follows new data", async () => {
    const page = await newPage();
    await signIn(page, people.manager);
    const machine = fleet[0]!;
    await page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) }).click();
    await page.waitForURL(`${base}/machines/${machine.machine_id}`);
    await page.getByRole("heading", { name: machine.machine_name }).waitFor();
    const table = page.getByRole("table", { name: "Latest axis values" });
    for (const axis of axisNames) await table.getByRole("rowheader", { name: axis }).waitFor();
    await expect.poll(() => page.locator(".uplot").count()).toBe(5);
    await shot(page, "machine");

    // A new sample arrives; the page shows it without a reload.
    await ingestOne({
      machine_id: machine.machine_id,
      axis_name: "X",
      actual_position: 777.125,
      target_position: 780,
      velocity: 12,
    });
    await table.getByRole("cell", { name: "777.125" }).waitFor();

    // Drag across a chart to zoom: the time under the middle of the chart moves into the span
    // dragged, stays there while data arrives, and a double-click returns to the live window.
    const chart = page.getByRole("figure", { name: /^Axis X:/ });
    const over = chart.locator(".u-over");
    const box = (await over.boundingBox())!;
    const span = async () =>
      (await chart
        .locator("figcaption time")
        .evaluateAll((times) =>
          times.map((time) => Date.parse(time.getAttribute("datetime")!)),
        )) as [number, number];
    const [liveFrom, liveTo] = await span();
    expect(liveTo - liveFrom).toBeCloseTo(15 * 60_000, -3);
    await page.mouse.move(box.x + box.width * 0.05, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.25, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    const zoomed = await span();
    // A fifth of the window, from its first twentieth.
    expect(zoomed[1] - zoomed[0]).toBeGreaterThan(2 * 60_000);
    expect(zoomed[1] - zoomed[0]).toBeLessThan(4 * 60_000);
    expect(zoomed[0] - liveFrom).toBeLessThan(90_000);
    await ingestOne({
      machine_id: machine.machine_id,
      axis_name: "X",
      actual_position: 778.5,
      target_position: 790,
    });
    await table.getByRole("cell", { name: "778.5" }).waitFor();
    await page.waitForTimeout(300);
    expect(await span()).toEqual(zoomed);
    await page.mouse.dblclick(box.x + box.width / 2, box.y + box.height / 2);
    await expect
      .poll(async () => (await span())[1] - (await span())[0])
      .toBeGreaterThan(14 * 60_000);
    // Zoomed, then another window chosen: that window is shown.
    await page.mouse.move(box.x + box.width * 0.05, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.25, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await expect.poll(async () => (await span())[1] - (await span())[0]).toBeLessThan(4 * 60_000);
    await page.getByRole("button", { name: "5 min", exact: true }).click();
    await expect
      .poll(async () => (await span())[1] - (await span())[0])
      .toBeCloseTo(5 * 60_000, -3);
    await page.getByRole("button", { name: "15 min", exact: true }).click();

    // The legend's entries are buttons, for the keyboard too.
    const acceleration = chart.getByRole("button", { name: /^Acceleration/ });
    const pressedBefore = await acceleration.getAttribute("aria-pressed");
    await acceleration.focus();
    await page.keyboard.press("Enter");
    await expect
      .poll(() => acceleration.getAttribute("aria-pressed"))
      .toBe(pressedBefore === "true" ? "false" : "true");

    await page.getByRole("button", { name: "5 min", exact: true }).click();
    await expect(
      page.getByRole("button", { name: "5 min", exact: true }).getAttribute("aria-pressed"),
    ).resolves.toBe("true");
    await page.getByRole("button", { name: "Pause" }).click();
    await page.getByRole("button", { name: "Resume" }).waitFor();
    await page.context().close();
  });

  it("explores history: machines × axes × fields charted as bands, CSV download matching the API, zoom re-queries", async () => {
    const page = await newPage();
    const queries: URL[] = [];
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.pathname === "/api/axis-data/") queries.push(url);
    });
    // "Last 15 min" follows time, asked again every 10 s: on a loaded machine that could land
    // between a query and the check of it, or under the drag. Here the page's time stands still,
    // so the window does not move (timers still run; the following has its own test below).
    await page.clock.setFixedTime(Date.now());
    await signIn(page, people.manager);
    await page
      .getByRole("navigation", { name: "Main" })
      .getByRole("link", { name: "History" })
      .click();
    await page.getByRole("heading", { name: "History" }).waitFor();
    await page.locator(".history-chart .uplot").first().waitFor();

    // Keyboard: the axis and field choices are labelled checkboxes.
    const [first, second] = [...fleet].sort((a, b) =>
      a.machine_name.localeCompare(b.machine_name, undefined, { numeric: true }),
    );
    await page.getByRole("checkbox", { name: new RegExp(`^${second!.machine_name} `) }).check();
    await page.getByRole("checkbox", { name: "Y", exact: true }).focus();
    await page.keyboard.press("Space");
    await page.getByRole("checkbox", { name: "Velocity" }).check();
    await expect.poll(() => page.locator(".history-chart .uplot").count()).toBe(2);
    await expect
      .poll(() => page.locator(".history-legend li").allTextContents())
      .toEqual([
        `${first!.machine_name} · X`,
        `${first!.machine_name} · Y`,
        `${second!.machine_name} · X`,
        `${second!.machine_name} · Y`,
      ]);
    await page.getByText(/buckets from [\d,]+ samples/).waitFor();
    const lastQuery = (which: (url: URL) => boolean) => queries.filter(which).at(-1)!;
    const query = queries.at(-1)!;
    expect(query.searchParams.get("max_points")).toBe("600");
    expect(query.searchParams.get("fields")).toBe("actual_position,velocity");
    await shot(page, "history");

    // The buckets' CSV: the same query with format=csv, fetched with the token, saved from a Blob.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download buckets (CSV)" }).click(),
    ]);
    // The chart's query is the one for the same span (the queries are told apart, not counted).
    const csvQuery = lastQuery((url) => url.searchParams.get("format") === "csv");
    expect(download.suggestedFilename()).toMatch(/-buckets\.csv$/);
    const sameSpan = (url: URL) =>
      ["from", "to"].every((end) => url.searchParams.get(end) === csvQuery.searchParams.get(end));
    const chartQuery = lastQuery((url) => !url.searchParams.has("format") && sameSpan(url));
    expect(csvQuery.searchParams.get("format")).toBe("csv");
    const { readFile } = await import("node:fs/promises");
    const csv = (await readFile(await download.path())).toString("utf8");
    csvQuery.searchParams.delete("format");
    expect(csvQuery.search).toBe(chartQuery.search);
    const json = (
      await t.inject({ url: `/api/axis-data/${csvQuery.search}`, headers: t.adminAuth })
    ).json() as Record<string, unknown>[];
    const [header, ...lines] = csv.trimEnd().split("\r\n");
    const columns = header!.split(",");
    expect(columns).toContain("velocity_max");
    expect(lines.length).toBe(json.length);
    expect(json.length).toBeGreaterThan(20);
    lines.forEach((line, index) => {
      const cells = line.split(",");
      columns.forEach((column, c) => {
        const value = json[index]![column];
        if (typeof value === "number") expect(Number(cells[c])).toBe(value);
        else expect(cells[c]).toBe(String(value));
      });
    });

    // The samples' CSV: every sample of the window (as many as the status line counts), with
    // homed, which no chart shows.
    const [samplesDownload] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download samples (CSV)" }).click(),
    ]);
    const samplesQuery = lastQuery((url) => !url.searchParams.has("max_points"));
    expect(samplesQuery.searchParams.get("format")).toBe("csv");
    expect(samplesQuery.searchParams.has("max_points")).toBe(false);
    expect(samplesQuery.searchParams.get("fields")).toBe("actual_position,velocity,homed");
    expect(samplesDownload.suggestedFilename()).toMatch(/-samples\.csv$/);
    const samplesCsv = (await readFile(await samplesDownload.path())).toString("utf8");
    const [samplesHeader, ...samples] = samplesCsv.trimEnd().split("\r\n");
    expect(samplesHeader!.split(",")).toEqual(
      expect.arrayContaining(["actual_position", "velocity", "homed", "update_timestamp"]),
    );
    const counted = await page.getByText(/buckets from [\d,]+ samples/).textContent();
    expect(samples.length).toBe(
      Number(/from ([\d,]+) samples/.exec(counted!)![1]!.replace(/,/g, "")),
    );
    expect(samplesHeader).not.toContain("velocity_max");
    samplesQuery.searchParams.delete("format");
    const raw = await t.inject({
      url: `/api/axis-data/${samplesQuery.search}`,
      headers: t.adminAuth,
    });
    expect(samples.length).toBe((raw.json() as unknown[]).length);

    // Drag across the chart: the page asks for that span, at finer buckets.
    const span = (url: URL) =>
      Date.parse(url.searchParams.get("to")!) - Date.parse(url.searchParams.get("from")!);
    const before = queries.length;
    const over = page.locator(".history-chart .u-over").first();
    const box = (await over.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.85, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    const isZoom = (url: URL) => span(url) < 15 * 60_000;
    await expect.poll(() => queries.slice(before).some(isZoom)).toBe(true);
    const zoomed = lastQuery(isZoom);
    expect(span(query)).toBe(15 * 60_000);
    expect(span(zoomed)).toBeGreaterThan(60_000);
    expect(span(zoomed)).toBeLessThan(4 * 60_000);
    expect(zoomed.searchParams.get("max_points")).toBe("600");
    await expect
      .poll(() => page.getByRole("button", { name: "Reset zoom" }).isEnabled())
      .toBe(true);
    await page.getByText(/buckets of (\d+ ms|\d(\.\d+)? s)/).waitFor();
    await shot(page, "history-zoomed");

    // The address holds the view: opened elsewhere (a bookmark, a colleague), it asks the same.
    await expect
      .poll(() => new URL(page.url()).searchParams.get("from"))
      .toBe(zoomed.searchParams.get("from"));
    const address = new URL(page.url());
    expect(address.searchParams.get("machine_id")).toBe(
      [first!.machine_id, second!.machine_id].sort((a, b) => a - b).join(","),
    );
    expect(address.searchParams.get("axis_name")).toBe("X,Y");
    expect(address.searchParams.get("fields")).toBe("actual_position,velocity");
    const shared = await newPage();
    await signIn(shared, people.manager);
    const asked = shared.waitForRequest(
      (request) => new URL(request.url()).pathname === "/api/axis-data/",
    );
    await shared.goto(address.href);
    expect(new URL((await asked).url()).search).toBe(zoomed.search);
    await shared.getByRole("button", { name: "Custom", pressed: true }).waitFor();
    await shared.context().close();

    await page.getByRole("button", { name: "Reset zoom" }).click();
    await expect.poll(() => span(queries.at(-1)!)).toBe(15 * 60_000);
    await expect.poll(() => new URL(page.url()).searchParams.get("window")).toBe("15m");

    // A custom window with no data says so.
    await page.getByRole("button", { name: "Custom" }).click();
    await page.getByLabel("From", { exact: true }).fill("2020-01-01T00:00:00");
    await page.getByLabel("To", { exact: true }).fill("2020-01-01T01:00:00");
    await page.getByLabel("To", { exact: true }).press("Tab");
    await page.getByText("No samples in this window for this selection.").waitFor();
    await page.context().close();

    for (const [name, options] of [
      ["history-dark", { dark: true }],
      ["history-tablet", { width: 820, height: 1180 }],
    ] as const) {
      const other = await newPage(options);
      await signIn(other, people.manager);
      await other.goto(`${base}/history?machine_id=${fleet[0]!.machine_id}`);
      await other.locator(".history-chart .uplot").first().waitFor();
      await other.getByText(/buckets from/).waitFor();
      await shot(other, name);
      await other.context().close();
    }
  });

  it("says degrees for rotary axes (A, C), millimetres for linear ones, and a feed in mm/min", async () => {
    const page = await newPage();
    await signIn(page, people.manager);
    const machine = fleet[0]!;
    // A path feed, like the tools' feed rates entered in mm/min.
    const tile = page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
    await expect.poll(() => tile.locator(".feed-value").textContent()).toMatch(/^\d+ mm\/min$/);

    await page.goto(`${base}/machines/${machine.machine_id}`);
    const legend = (axis: string) =>
      page
        .getByRole("figure", { name: new RegExp(`^Axis ${axis}:`) })
        .locator(".u-legend th")
        .allTextContents();
    await expect
      .poll(() => legend("A"))
      .toEqual(expect.arrayContaining(["Actual (°)", "Velocity (°/s)", "Acceleration (°/s²)"]));
    expect(await legend("C")).toContain("Velocity (°/s)");
    expect(await legend("X")).toEqual(
      expect.arrayContaining(["Actual (mm)", "Velocity (mm/s)", "Acceleration (mm/s²)"]),
    );

    // History: each chart's heading names its unit, both when linear and rotary axes are mixed.
    await page.goto(
      `${base}/history?machine_id=${machine.machine_id}&axis_name=A&fields=actual_position,velocity`,
    );
    const headings = () => page.locator(".chart-panel h2").allTextContents();
    await expect.poll(headings).toEqual(["Actual position (°)", "Velocity (°/s)"]);
    await page.getByRole("checkbox", { name: "X", exact: true }).check();
    await expect.poll(headings).toEqual(["Actual position (mm · °)", "Velocity (mm/s · °/s)"]);
    await page.context().close();
  });

  it("names the tool in use by its number on the machine, not its database id", async () => {
    const machine_id = nextMachineId();
    const machine_name = uniqueName("Okuma MB-46 ");
    await arrange("/data/machines/", { machine_id, machine_name, tool_capacity: 12 });
    const tools = [];
    for (const [tool_offset, feedrate] of [
      [80, 600],
      [95.5, 750],
      [112, 900],
    ])
      tools.push(await arrange("/data/tools/", { machine: machine_id, tool_offset, feedrate }));
    const third = tools[2].tool_id as number;
    await arrange("/data/tool-usage/", { machine: machine_id, tool_in_use: third });
    // Ids are the database's: the third tool of this machine has a larger one.
    expect(third).toBeGreaterThan(3);

    const page = await newPage();
    await signIn(page, people.manager);
    await page.getByLabel("Filter").fill(machine_name);
    const meta = page.locator(".tile .tile-meta");
    await meta.getByText("T3 in use", { exact: true }).waitFor();
    expect(await meta.textContent()).not.toContain(`T${third}`);

    await page.goto(`${base}/machines/${machine_id}`);
    await page
      .getByRole("heading", { name: machine_name })
      .locator("xpath=../p")
      .getByText("T3 in use (offset 112 mm, 900 mm/min)")
      .waitFor();
    await page.context().close();
    await t.inject({
      method: "DELETE",
      url: `/data/machines/${machine_id}/`,
      headers: t.adminAuth,
    });
  });

  it("counts and numbers a machine's tools past the first page of the fleet's tools", async () => {
    // A fleet of 1,000 machines has 24,000 tools, more than one list answer holds (10,000).
    const filler = nextMachineId();
    await arrange("/data/machines/", {
      machine_id: filler,
      machine_name: uniqueName("Magazine "),
      tool_capacity: 10_000,
    });
    await t.database.db.query(
      `insert into tool (machine_id, tool_offset, feedrate)
       select $1, 50, 500 from generate_series(1, 10000)`,
      [filler],
    );
    try {
      const machine_id = nextMachineId();
      const machine_name = uniqueName("Mazak VCN-530C ");
      await arrange("/data/machines/", { machine_id, machine_name, tool_capacity: 12 });
      const tools = [];
      for (const feedrate of [600, 750])
        tools.push(
          await arrange("/data/tools/", { machine: machine_id, tool_offset: 80, feedrate }),
        );
      await arrange("/data/tool-usage/", { machine: machine_id, tool_in_use: tools[1].tool_id });

      const page = await newPage();
      await signIn(page, people.manager);
      await page.getByLabel("Filter").fill(machine_name);
      const meta = page.locator(".tile .tile-meta");
      await meta.getByText("T2 in use", { exact: true }).waitFor();
      expect(await meta.textContent()).toContain("2/12 tools");
      await page.context().close();
      await t.inject({
        method: "DELETE",
        url: `/data/machines/${machine_id}/`,
        headers: t.adminAuth,
      });
    } finally {
      await t.inject({ method: "DELETE", url: `/data/machines/${filler}/`, headers: t.adminAuth });
    }
  });

  it("says the bucket width the server used, not one read from its buckets' starts", async () => {
    const machine_id = nextMachineId();
    await arrange("/data/machines/", {
      machine_id,
      machine_name: uniqueName("Hermle C 42 "),
      tool_capacity: 1,
    });
    await arrange("/data/axes/", {
      machine: machine_id,
      axis_name: "X",
      max_acceleration: 2000,
      max_velocity: 500,
    });
    // 15 minutes in 600 points would be 1.5 s; the server rounds up to its rollups' grid.
    const to = Math.floor(Date.now() / 1000) * 1000;
    const from = to - 15 * 60_000;
    const answer = await createHistoryService(t.services).query({
      machineIds: [machine_id],
      axisNames: ["X"],
      fields: ["actual_position"],
      from: new Date(from),
      to: new Date(to),
      maxPoints: 600,
    });
    const bucketMs = answer.bucketMs!;
    expect(bucketMs).not.toBe(Math.ceil((to - from) / 600));
    // A sample every other bucket: the buckets' starts step twice the width, every time.
    const every = 2 * bucketMs;
    const samples = [];
    for (let at = Math.ceil((to - 60 * every) / every) * every; at < to; at += every)
      samples.push({
        machine_id,
        axis_name: "X",
        actual_position: at % 7,
        target_position: 0,
        homed: true,
        acceleration: 0,
        velocity: 0,
        timestamp: new Date(at).toISOString(),
      });
    const ingest = await t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: t.adminAuth,
      payload: { axis_data: samples },
    });
    expect(ingest.statusCode, ingest.body).toBe(202);

    const page = await newPage();
    await signIn(page, people.manager);
    await page.goto(
      `${base}/history?machine_id=${machine_id}&axis_name=X&fields=actual_position&from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`,
    );
    const status = page.getByText(/buckets from/);
    await status.waitFor();
    expect(await status.textContent()).toContain(`buckets of ${bucketMs / 1000} s`);
    await page.context().close();
    await t.inject({
      method: "DELETE",
      url: `/data/machines/${machine_id}/`,
      headers: t.adminAuth,
    });
  });

  it("shows a fleet tile as loading until its first values come back, and No data only then", async () => {
    const machine_id = nextMachineId();
    const machine_name = uniqueName("Hermle C 42 ");
    await arrange("/data/machines/", { machine_id, machine_name, tool_capacity: 12 });
    await arrange("/data/axes/", {
      machine: machine_id,
      axis_name: "X",
      max_acceleration: 2000,
      max_velocity: 500,
    });
    const page = await newPage();
    // This machine's samples are held back until the tile has been seen loading.
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    await page.route(
      (url) =>
        url.pathname === "/data/axises/" && url.searchParams.get("machine") === String(machine_id),
      async (route) => {
        await released;
        await route.continue();
      },
    );
    await signIn(page, people.manager);
    await page.getByLabel("Filter").fill(machine_name);
    const tile = (state: string) => page.getByRole("link", { name: `${machine_name}, ${state}` });
    await tile("Loading").waitFor();
    expect(await tile("No data").count()).toBe(0);
    release();
    await tile("No data").waitFor();
    await page.context().close();
    await t.inject({
      method: "DELETE",
      url: `/data/machines/${machine_id}/`,
      headers: t.adminAuth,
    });
  });

  it("gives the numbers of the machine table and the axes and tools tables their units", async () => {
    const page = await newPage();
    await signIn(page, people.manager);
    const machine = fleet[0]!;
    await page.goto(`${base}/machines/${machine.machine_id}`);
    const latest = page.getByRole("table", { name: "Latest axis values" });
    const cells = (axis: string) =>
      latest
        .getByRole("row")
        .filter({ has: page.getByRole("rowheader", { name: axis, exact: true }) })
        .getByRole("cell")
        .allTextContents();
    // Actual, target, to go, velocity, acceleration, homed, limits.
    await expect
      .poll(() => cells("X"), { timeout: 15_000 })
      .toEqual([
        expect.stringMatching(/^-?\d+\.\d{3} mm$/),
        expect.stringMatching(/^-?\d+\.\d{3} mm$/),
        expect.stringMatching(/^-?\d+\.\d{3} mm$/),
        expect.stringMatching(/^-?\d+\.\d mm\/s$/),
        expect.stringMatching(/^-?\d+\.\d mm\/s²$/),
        "Yes",
        "500 mm/s / 2000 mm/s²",
      ]);
    expect(await cells("A")).toEqual([
      expect.stringMatching(/^-?\d+\.\d{3} °$/),
      expect.stringMatching(/^-?\d+\.\d{3} °$/),
      expect.stringMatching(/^-?\d+\.\d{3} °$/),
      expect.stringMatching(/^-?\d+\.\d °\/s$/),
      expect.stringMatching(/^-?\d+\.\d °\/s²$/),
      "Yes",
      "500 °/s / 2000 °/s²",
    ]);

    // Administration: an axis' limits in its own units; a tool's in the columns' headings.
    await page.goto(`${base}/admin/axes`);
    await page.getByLabel("Machine").selectOption(String(machine.machine_id));
    const axes = page.getByRole("table", { name: "Axes" });
    const limits = (axis: string) =>
      axes
        .getByRole("row")
        .filter({ has: page.getByRole("cell", { name: axis, exact: true }) })
        .getByRole("cell")
        .allTextContents();
    await expect
      .poll(() => limits("C"), { timeout: 15_000 })
      .toEqual([expect.any(String), "C", "2000 °/s²", "500 °/s", expect.any(String)]);
    expect(await limits("Y")).toEqual([
      expect.any(String),
      "Y",
      "2000 mm/s²",
      "500 mm/s",
      expect.any(String),
    ]);
    await page.goto(`${base}/admin/tools`);
    const headings = page.getByRole("table", { name: "Tools" }).getByRole("columnheader");
    await headings.first().waitFor();
    expect(await headings.allTextContents()).toEqual(
      expect.arrayContaining(["Tool offset (mm)", "Feed rate (mm/min)"]),
    );
    await page.context().close();
  });

  it("says so when the machine on screen is deleted, instead of looking live", async () => {
    const machine_id = nextMachineId();
    await arrange("/data/machines/", {
      machine_id,
      machine_name: "Mazak QTN 200",
      tool_capacity: 12,
    });
    await arrange("/data/axes/", {
      machine: machine_id,
      axis_name: "X",
      max_acceleration: 2000,
      max_velocity: 500,
    });
    await ingestOne({ machine_id, axis_name: "X", actual_position: 12.5 });
    const page = await newPage();
    await page.clock.install();
    await signIn(page, people.manager);
    await page.goto(`${base}/machines/${machine_id}`);
    const table = page.getByRole("table", { name: "Latest axis values" });
    await table.getByRole("cell", { name: "12.500" }).first().waitFor();

    const deleted = await t.inject({
      method: "DELETE",
      url: `/data/machines/${machine_id}/`,
      headers: t.adminAuth,
    });
    expect(deleted.statusCode).toBe(204);
    // The page reads the machine again every 15 s: that time passes at once here.
    await page.clock.fastForward(16_000);
    await page.getByText("This machine no longer exists").waitFor();
    expect(await table.count()).toBe(0);
    await shot(page, "machine-deleted");
    // A machine never on screen (an old bookmark) is not found, not "deleted".
    await page.goto(`${base}/machines/${machine_id}`);
    await page.getByRole("alert").getByText("Not found").waitFor();
    expect(await page.getByText("no longer exists").count()).toBe(0);
    await page.context().close();
  });

  it("keeps a relative history window (Last 15 min) following time, and says so", async () => {
    const page = await newPage();
    await page.clock.install();
    const queries: URL[] = [];
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.pathname === "/api/axis-data/") queries.push(url);
    });
    await signIn(page, people.manager);
    await page.goto(`${base}/history?machine_id=${fleet[0]!.machine_id}&window=15m`);
    await page.getByText(/follows time, asked again every 10 s/).waitFor();
    const asked = queries.length;
    const first = queries.at(-1)!;
    await page.clock.fastForward(11_000);
    await expect.poll(() => queries.length).toBeGreaterThan(asked);
    const next = queries.at(-1)!;
    const end = (url: URL) => Date.parse(url.searchParams.get("to")!);
    expect(end(next) - end(first)).toBeGreaterThanOrEqual(10_000);
    await page.context().close();
  });

  it("does not leave the previous window's charts under a history query that failed", async () => {
    const page = await newPage();
    await signIn(page, people.manager);
    await page.goto(`${base}/history?machine_id=${fleet[0]!.machine_id}&window=15m`);
    await page.locator(".history-chart .uplot").first().waitFor();
    await page.getByText(/buckets from/).waitFor();

    await page.getByRole("button", { name: "Custom" }).click();
    await page.getByLabel("From", { exact: true }).fill("2020-01-01T00:00:00");
    await page.getByLabel("From", { exact: true }).press("Tab");
    await page.getByText("The window may span at most 400 days.").waitFor();
    await expect.poll(() => page.locator(".history-chart").count()).toBe(0);
    expect(await page.getByText(/buckets from/).count()).toBe(0);

    // An incomplete choice charts nothing either, and the error of another window goes.
    await page.getByLabel("From", { exact: true }).fill("");
    await page.getByLabel("From", { exact: true }).press("Tab");
    await page.getByText("Enter both ends of the custom window.").waitFor();
    expect(await page.getByText("The window may span at most 400 days.").count()).toBe(0);
    await page.context().close();
  });

  it("says which machines the fleet's status summary and filter count: those shown so far", async () => {
    // Short: a few rows of tiles on screen, so most machines have not been shown yet.
    const page = await newPage({ height: 420 });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    const summary = page.locator(".page-head p.muted").first();
    await expect.poll(() => summary.textContent()).toMatch(/of the \d+ shown so far: \d+ \w+/);
    const [, total, known] = /^(\d+) machines · of the (\d+) shown so far/.exec(
      (await summary.textContent())!,
    )!;
    expect(Number(known)).toBeLessThan(Number(total));

    // The filter's note names the same count as the summary. More tiles may come on screen
    // while the page settles (the grid measures itself), so both are read together.
    await page.getByRole("combobox", { name: /^Status/ }).selectOption("running");
    const notes = page.getByRole("status");
    await expect
      .poll(async () => {
        const knownNow = /of the (\d+) shown so far/.exec((await summary.textContent()) ?? "");
        const said = (await notes.allTextContents()).join(" ");
        return knownNow !== null && Number(knownNow[1]) < Number(total)
          ? said.includes(`Status is known only for the ${knownNow[1]} machines shown so far`)
          : `summary: ${knownNow?.[0]}`;
      })
      .toBe(true);
    await page.getByRole("combobox", { name: /^Status/ }).selectOption("all");

    // Scrolled through, every machine has been shown: the summary counts them all.
    for (let i = 0; i < 10; i++) {
      await page.mouse.wheel(0, 400);
      await page.waitForTimeout(100);
    }
    await expect
      .poll(() => summary.textContent())
      .toMatch(new RegExp(`^${total} machines · \\d+ `));
    expect(await summary.textContent()).not.toContain("shown so far");
    await page.context().close();
  });

  it("pushes live values over the WebSocket to the fleet tiles", async () => {
    const page = await newPage();
    const pushed: string[] = [];
    const sent: string[] = [];
    page.on("websocket", (socket) => {
      if (!socket.url().endsWith("/ws/machine_data/")) return;
      socket.on("framereceived", ({ payload }) => pushed.push(String(payload)));
      socket.on("framesent", ({ payload }) => sent.push(String(payload)));
    });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    await page.getByText("pushed as it arrives").first().waitFor();
    await expect.poll(() => pushed.some((frame) => frame.includes('"snapshot":true'))).toBe(true);
    const machine = fleet[2]!;
    const tile = page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
    await ingestOne({ machine_id: machine.machine_id, axis_name: "Y", actual_position: 4321.5 });
    await expect.poll(() => tile.textContent(), { timeout: 5000 }).toContain("4321.5");
    // Pushed, not polled: the page never fell back to polling (its tiles' first rows are read
    // over REST once, so requests alone cannot tell), and a frame carried the value.
    expect(await page.getByText(/updated every \d+ s/).count()).toBe(0);
    await page.getByText("pushed as it arrives").first().waitFor();
    // The frame's event can reach the test a moment after the page has drawn it.
    await expect.poll(() => pushed.some((frame) => frame.includes("4321.5"))).toBe(true);
    const push = JSON.parse(pushed.find((frame) => frame.includes("4321.5"))!);
    // It subscribes with a window, and acknowledges each push once it has shown it.
    expect(sent.some((frame) => JSON.parse(frame).window === 8)).toBe(true);
    await expect
      .poll(() => sent.map((frame) => JSON.parse(frame)))
      .toContainEqual({ type: "ack", seq: push.seq });
    await shot(page, "fleet-live", false);
    await page.context().close();
  });

  it("reconnects a dropped live socket with a banner, resuming with since_seq", async () => {
    const page = await newPage();
    const subscribes: Record<string, unknown>[] = [];
    let seqDelivered = false;
    let connections = 0;
    let refuse = false;
    let drop: (() => Promise<void>) | undefined;
    await page.routeWebSocket(/\/ws\/machine_data\/$/, (socket) => {
      connections++;
      // While refusing, the socket closes at once: the page cannot reach the live feed.
      if (refuse) return void socket.close({ code: 1011, reason: "refused by the test" });
      const server = socket.connectToServer();
      socket.onMessage((message) => {
        const parsed = JSON.parse(String(message)) as Record<string, unknown>;
        if (parsed.type === "subscribe") subscribes.push(parsed);
        server.send(message);
      });
      // Forwarded by hand, to know when the page has been sent a seq to resume from.
      server.onMessage((message) => {
        if (/"seq":\d/.test(String(message))) seqDelivered = true;
        socket.send(message);
      });
      drop = () => server.close();
    });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    await expect.poll(() => subscribes.length).toBe(1);
    expect(subscribes[0]!.since_seq).toBeUndefined();
    // Drop only once the page holds a seq: before that there is nothing to resume from.
    await expect.poll(() => seqDelivered).toBe(true);
    await page.waitForTimeout(200);

    refuse = true;
    await drop!();
    await page.getByText("Reconnecting…").waitFor();
    await expect.poll(() => connections, { timeout: 15_000 }).toBeGreaterThan(2);
    await shot(page, "live-reconnecting", false);
    refuse = false;
    await expect.poll(() => page.getByText("Reconnecting…").count(), { timeout: 15_000 }).toBe(0);
    await expect.poll(() => subscribes.length).toBe(2);
    expect(typeof subscribes[1]!.since_seq).toBe("number");

    const machine = fleet[4]!;
    const tile = page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
    await ingestOne({ machine_id: machine.machine_id, axis_name: "Z", actual_position: 2468.25 });
    await expect.poll(() => tile.textContent(), { timeout: 5000 }).toContain("2468.3");
    await page.context().close();
  });

  it("resumes a paused machine chart with a fresh subscription, acknowledging pushes without a flood", async () => {
    const page = await newPage();
    const subscribes: Record<string, unknown>[] = [];
    let acks = 0;
    const refusals: string[] = [];
    page.on("websocket", (socket) => {
      socket.on("framesent", ({ payload }) => {
        const message = JSON.parse(String(payload)) as Record<string, unknown>;
        if (message.type === "subscribe") subscribes.push(message);
        if (message.type === "ack") acks++;
      });
      socket.on("framereceived", ({ payload }) => {
        if (String(payload).includes('"type":"error"')) refusals.push(String(payload));
      });
    });
    await signIn(page, people.manager);
    const machine = fleet[7]!;
    await page.goto(`${base}/machines/${machine.machine_id}`);
    await expect.poll(() => page.locator(".uplot").count()).toBe(5);
    await expect.poll(() => subscribes.length).toBe(1);

    await page.getByRole("button", { name: "Pause" }).click();
    // Long enough for the idle socket to close; pushes go on meanwhile.
    const pausedUntil = Date.now() + 6000;
    for (let step = 0; Date.now() < pausedUntil; step++) {
      await ingestSamples([machine.machine_id], step);
    }
    acks = 0;
    const resumedAt = Date.now();
    await page.getByRole("button", { name: "Resume" }).click();
    await expect.poll(() => subscribes.length).toBe(2);
    expect(subscribes[1]!.since_seq).toBeUndefined();
    // Live again, and busy: acknowledgements are cumulative, a few a second at most.
    const busyUntil = Date.now() + 1500;
    for (let step = 0; Date.now() < busyUntil; step++) {
      await ingestSamples([machine.machine_id], step);
    }
    await page.waitForTimeout(300);
    expect(acks).toBeGreaterThan(0);
    // One per push would be hundreds; one per 50 ms at most leaves room under Spindle's 50/s.
    expect(acks).toBeLessThanOrEqual(Math.ceil((Date.now() - resumedAt) / 50) + 1);
    expect(refusals).toEqual([]);
    await page.context().close();
  });

  it("reads a machine's window again when the live feed could not replay what it missed", async () => {
    const page = await newPage();
    let seqDelivered = false;
    const resets: string[] = [];
    let drop: (() => Promise<void>) | undefined;
    await page.routeWebSocket(/\/ws\/machine_data\/$/, (socket) => {
      const server = socket.connectToServer();
      socket.onMessage((message) => {
        const parsed = JSON.parse(String(message)) as Record<string, unknown>;
        // As after a long outage: the seq to resume from is older than Spindle still holds.
        if (parsed.type === "subscribe" && parsed.since_seq !== undefined) parsed.since_seq = 1;
        server.send(JSON.stringify(parsed));
      });
      server.onMessage((message) => {
        if (/"seq":\d/.test(String(message))) seqDelivered = true;
        if (String(message).includes('"reset":true')) resets.push(String(message));
        socket.send(message);
      });
      drop = () => server.close();
    });
    const windows: string[] = [];
    page.on("request", (request) => {
      if (new URL(request.url()).pathname === "/api/axis-data/") windows.push(request.url());
    });
    await signIn(page, people.manager);
    const machine = fleet[5]!;
    await page.goto(`${base}/machines/${machine.machine_id}`);
    await expect.poll(() => page.locator(".uplot").count()).toBe(5);
    await ingestOne({ machine_id: machine.machine_id, axis_name: "X", actual_position: 10.5 });
    await expect.poll(() => seqDelivered).toBe(true);
    const before = windows.length;
    expect(before).toBeGreaterThan(0);

    await drop!();
    // The reset snapshot: one message per kind of data, each flagged.
    await expect.poll(() => resets.length, { timeout: 15_000 }).toBeGreaterThan(0);
    await expect.poll(() => windows.length).toBe(before + 1);
    await page.waitForTimeout(1000);
    expect(windows.length).toBe(before + 1);
    await expect.poll(() => page.locator(".uplot").count()).toBe(5);
    await page.context().close();
  });

  it("comes back on the renewed token when renewing its tokens closes the live socket", async () => {
    const page = await newPage();
    /** The token each live socket authenticated with, in order. */
    const tokens: string[] = [];
    await page.routeWebSocket(/\/ws\/machine_data\/$/, (socket) => {
      const server = socket.connectToServer();
      socket.onMessage((message) => {
        const parsed = JSON.parse(String(message)) as { type?: string; token?: string };
        if (parsed.type === "authenticate") tokens.push(parsed.token!);
        server.send(message);
      });
      server.onMessage((message) => socket.send(message));
    });
    const renewals: string[] = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/o/token/") && request.postData()?.includes("refresh_token"))
        renewals.push(request.postData()!);
    });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    await expect.poll(() => tokens.length).toBe(1);
    // The console renews at 80% of a token's life: make the stored one due a second from now.
    await page.evaluate(() => {
      const stored = JSON.parse(localStorage.getItem("spindle.session")!);
      stored.expiresAt = Date.now() + stored.lifetime * 0.2 + 1000;
      localStorage.setItem("spindle.session", JSON.stringify(stored));
    });
    await page.reload();
    await page.locator(".tile").first().waitFor();
    // Renewing revokes the access token the socket used. The console sends the new one on the
    // open socket; if Spindle closed it first (4401), it comes back with the new one. Either
    // way it renews once, and its live socket ends on the new token.
    await expect.poll(() => renewals.length, { timeout: 10_000 }).toBe(1);
    const stored = () =>
      page.evaluate(() => JSON.parse(localStorage.getItem("spindle.session")!).access as string);
    // The request is seen before its answer is.
    await expect.poll(stored).not.toBe(tokens[0]);
    const renewed = await stored();
    await expect.poll(() => tokens.at(-1)).toBe(renewed);
    await page.waitForTimeout(1000);
    expect(renewals).toHaveLength(1);
    expect(tokens.at(-1)).toBe(renewed);
    const machine = fleet[6]!;
    const tile = page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
    await ingestOne({ machine_id: machine.machine_id, axis_name: "Z", actual_position: 1357.75 });
    await expect.poll(() => tile.textContent(), { timeout: 5000 }).toContain("1357.8");
    await page.context().close();
  });

  it("lets an Admin create and delete a machine, showing the API's reasons by the field", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("table", { name: "Users" }).waitFor();
    await page
      .getByRole("cell", { name: people.operator })
      .or(page.getByText(people.operator))
      .first()
      .waitFor();
    await shot(page, "admin-users");
    await page.getByRole("link", { name: "Groups & permissions" }).click();
    await page.getByRole("table", { name: "Permissions by group" }).waitFor();
    await shot(page, "admin-groups");
    await page.getByRole("link", { name: "OAuth2 clients" }).click();
    await page.getByRole("rowheader", { name: consoleClient.clientId }).waitFor();
    await shot(page, "admin-clients");

    await page.getByRole("link", { name: "Machines", exact: true }).click();
    await page.getByRole("table", { name: "Machines" }).waitFor();
    await page.getByRole("button", { name: "New machine" }).click();
    const form = page.getByRole("form", { name: "New machine" });
    const id = nextMachineId();
    await form.getByLabel("Machine id").fill(String(fleet[1]!.machine_id));
    await form.getByLabel("Name").fill("Hermle C 42 #1");
    await form.getByLabel("Tool capacity").fill("many");
    await form.getByRole("button", { name: "Create machine" }).click();
    const capacity = form.getByLabel("Tool capacity");
    await expect.poll(() => capacity.getAttribute("aria-invalid")).toBe("true");
    const reason = form.locator("[data-field-error=tool_capacity]");
    await expect(reason.textContent()).resolves.toBe("A valid integer is required.");
    expect(await capacity.getAttribute("aria-describedby")).toContain(
      await reason.getAttribute("id"),
    );
    await shot(page, "admin-machine-invalid");

    await capacity.fill("42");
    await form.getByRole("button", { name: "Create machine" }).click();
    await form.locator("[data-field-error=machine_id]").waitFor();
    await expect(form.locator("[data-field-error=machine_id]").textContent()).resolves.toContain(
      "already exists",
    );
    await form.getByLabel("Machine id").fill(String(id));
    await form.getByRole("button", { name: "Create machine" }).click();
    await page.getByText(`Saved machine ${id}.`).waitFor();
    const row = page.getByRole("row", { name: new RegExp(`^${id} Hermle C 42 #1`) });
    await row.waitFor();
    expect(
      (await t.inject({ url: `/data/machines/${id}/`, headers: t.adminAuth })).statusCode,
    ).toBe(200);
    await shot(page, "admin-machines");

    // From the keyboard: Delete asks and puts focus on Cancel, so Enter twice (a double press)
    // asks and cancels, and Escape cancels too; nothing is deleted.
    const deleteButton = row.getByRole("button", { name: "Delete", exact: true });
    const focused = () => page.evaluate(() => document.activeElement?.textContent);
    await deleteButton.focus();
    await page.keyboard.press("Enter");
    await row.getByRole("button", { name: "Yes, delete" }).waitFor();
    await expect.poll(focused).toBe("Cancel");
    await page.keyboard.press("Enter");
    await deleteButton.waitFor();
    await deleteButton.click();
    await expect.poll(focused).toBe("Cancel");
    await page.keyboard.press("Escape");
    await deleteButton.waitFor();
    expect(
      (await t.inject({ url: `/data/machines/${id}/`, headers: t.adminAuth })).statusCode,
    ).toBe(200);

    await deleteButton.click();
    await row.getByRole("button", { name: "Yes, delete" }).click();
    await page.getByText(`Deleted machine ${id}.`).waitFor();
    await expect.poll(() => row.count()).toBe(0);
    expect(
      (await t.inject({ url: `/data/machines/${id}/`, headers: t.adminAuth })).statusCode,
    ).toBe(404);

    await page.getByRole("link", { name: "Axes", exact: true }).click();
    await page.getByRole("table", { name: "Axes" }).waitFor();
    await shot(page, "admin-axes");
    await page.context().close();
  });

  it("shows an expected refusal in the server's words, not as something gone wrong", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    await page.goto(`${base}/admin/groups`);
    await page.getByRole("checkbox", { name: "Admin: group.change" }).uncheck();
    await page.getByRole("button", { name: /^Save changes/ }).click();
    const notice = page.getByRole("alert");
    await notice.getByText("Could not change permissions").waitFor();
    // Without the API's field name ("permissions: …").
    await expect(notice.locator("span").textContent()).resolves.toBe(
      "The Admin group keeps group.change, or no one could grant permissions again.",
    );
    await shot(page, "admin-refusal");
    await page.context().close();
  });

  it("names each page in the tab's title", async () => {
    const page = await newPage();
    await page.goto(`${base}/`);
    await expect.poll(() => page.title()).toBe("Sign in · Spindle");
    await signIn(page, people.admin);
    await expect.poll(() => page.title()).toBe("Fleet · Spindle");
    const machine = fleet[6]!;
    await page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) }).click();
    await expect.poll(() => page.title()).toBe(`${machine.machine_name} · Spindle`);
    await page
      .getByRole("navigation", { name: "Main" })
      .getByRole("link", { name: "History" })
      .click();
    await expect.poll(() => page.title()).toBe("History · Spindle");
    await page.getByRole("link", { name: "Administration" }).click();
    await expect.poll(() => page.title()).toBe("Users · Administration · Spindle");
    await page.getByRole("link", { name: "OAuth2 clients" }).click();
    await expect.poll(() => page.title()).toBe("OAuth2 clients · Administration · Spindle");
    await page.context().close();
  });

  it("keeps an admin page as it is while renewing the tokens: a new client's secret stays shown", async () => {
    const page = await newPage();
    // The console renews at 80% of a token's life (here 10 h): the page's clock jumps there.
    await page.clock.install();
    const renewals: string[] = [];
    page.on("response", (response) => {
      if (
        response.url().endsWith("/o/token/") &&
        response.request().postData()?.includes("refresh_token")
      )
        renewals.push(String(response.status()));
    });
    await signIn(page, people.admin);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("link", { name: "OAuth2 clients" }).click();
    await page.getByRole("button", { name: "New client" }).click();
    const form = page.getByRole("form", { name: "New client" });
    const clientId = uniqueName("adapter").replaceAll("_", "-");
    await form.getByLabel("Client id").fill(clientId);
    await form.getByLabel("Name").fill("Cell 3 adapter");
    await form.getByRole("button", { name: "Create client" }).click();
    const secret = page.locator("code.secret");
    await secret.waitFor();
    const shown = await secret.textContent();
    expect(shown!.length).toBeGreaterThan(20);

    await page.clock.fastForward(36_000 * 800 + 5_000);
    await expect.poll(() => renewals, { timeout: 10_000 }).toEqual(["200"]);
    // Give the page the turns in which it would have swapped the section for "Loading".
    await page.waitForTimeout(500);
    await expect(secret.textContent()).resolves.toBe(shown);
    await page.getByRole("rowheader", { name: clientId }).waitFor();
    await page.context().close();
  });

  it("keeps a new client's secret until dismissed, with a Copy button", async () => {
    const page = await newPage();
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
    await signIn(page, people.admin);
    await page.goto(`${base}/admin/clients`);
    const create = async () => {
      const id = uniqueName("cell").replaceAll("_", "-");
      await page.getByRole("button", { name: "New client" }).click();
      const form = page.getByRole("form", { name: "New client" });
      await form.getByLabel("Client id").fill(id);
      await form.getByRole("button", { name: "Create client" }).click();
      await page.getByRole("rowheader", { name: id }).waitFor();
      return id;
    };
    const first = await create();
    const notice = page.getByRole("status").filter({ hasText: `Client ${first} created.` });
    const secret = (await notice.locator("code.secret").textContent())!;
    expect(secret.length).toBeGreaterThan(20);

    // Another client created, then deleted: the first one's secret stays.
    const second = await create();
    await page
      .getByRole("row", { name: new RegExp(second) })
      .getByRole("button", { name: "Delete" })
      .click();
    await page.getByRole("button", { name: "Yes, delete" }).click();
    await page.getByText(`Deleted client ${second}.`).waitFor();
    await expect(notice.locator("code.secret").textContent()).resolves.toBe(secret);

    await notice.getByRole("button", { name: "Copy secret" }).click();
    await notice.getByText("Copied.").waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);

    // Without a clipboard (plain http on another host), the secret is selected to copy by hand.
    await page.evaluate(() => Object.defineProperty(navigator, "clipboard", { value: undefined }));
    await notice.getByRole("button", { name: "Copy secret" }).click();
    await notice.getByText(/press Ctrl\+C/).waitFor();
    expect(await page.evaluate(() => window.getSelection()?.toString())).toBe(secret);

    await notice.getByRole("button", { name: "Dismiss" }).click();
    await expect.poll(() => notice.count()).toBe(0);
    await page.context().close();
  });

  it("shows the fleet when loading it takes longer than its refresh interval (10 s)", async () => {
    const page = await newPage();
    await page.route(/\/data\/machines\/\?/, async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 10_500));
      await route.continue().catch(() => undefined);
    });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor({ timeout: 20_000 });
    await page.context().close();
  }, 30_000);

  it("does not show administration to an Operator, and loads their pages without a failed request", async () => {
    const page = await newPage();
    const failures = watchFailures(page);
    await signIn(page, people.operator);
    await page.locator(".tile").first().waitFor();
    await page.reload();
    await page.locator(".tile").first().waitFor();
    await page.waitForTimeout(1500); // the page's first polls and its live socket
    expect(failures).toEqual([]);
    expect(await page.getByRole("link", { name: "Administration" }).count()).toBe(0);

    await page.goto(`${base}/admin/users`);
    await page.getByText("Not available to you").waitFor();
    await page.getByText("Your groups do not allow you to manage users.").waitFor();
    expect(await page.getByRole("table", { name: "Users" }).count()).toBe(0);
    await shot(page, "operator-admin");
    await page.goto(`${base}/admin`);
    await page.getByText("Your groups do not allow you to administer anything here.").waitFor();
    expect(await page.getByRole("navigation", { name: "Administration" }).count()).toBe(0);
    expect(failures).toEqual([]);
    await page.context().close();
  });

  it("gives a Manager the Machines, Axes and Tools pages, to add and edit but not delete", async () => {
    const page = await newPage();
    const asked: string[] = [];
    page.on("request", (request) => asked.push(new URL(request.url()).pathname));
    await signIn(page, people.manager);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("table", { name: "Machines" }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/admin/machines");
    expect(await adminSections(page)).toEqual(["Machines", "Axes", "Tools"]);

    await page.getByRole("button", { name: "New machine" }).click();
    const form = page.getByRole("form", { name: "New machine" });
    const id = nextMachineId();
    await form.getByLabel("Machine id").fill(String(id));
    await form.getByLabel("Name").fill("Mazak VCN-530C #1");
    await form.getByLabel("Tool capacity").fill("30");
    await form.getByRole("button", { name: "Create machine" }).click();
    await page.getByText(`Saved machine ${id}.`).waitFor();
    await page
      .getByRole("row", { name: new RegExp(`^${id} Mazak VCN-530C #1`) })
      .getByRole("button", { name: "Edit" })
      .click();
    const edit = page.getByRole("form", { name: `Edit machine ${id}` });
    await edit.getByLabel("Name").fill("Mazak VCN-530C #2");
    await edit.getByRole("button", { name: "Save changes" }).click();
    await page.getByRole("row", { name: new RegExp(`^${id} Mazak VCN-530C #2`) }).waitFor();
    expect(await page.getByRole("button", { name: "Delete" }).count()).toBe(0);
    await shot(page, "manager-machines");

    await page.getByRole("link", { name: "Tools", exact: true }).click();
    await page
      .getByRole("combobox", { name: /^Machine/ })
      .selectOption(String(fleet[0]!.machine_id));
    await page
      .getByRole("table", { name: "Tools" })
      .getByRole("button", { name: "Edit" })
      .waitFor();
    await page.getByRole("button", { name: "New tool" }).waitFor();
    expect(await page.getByRole("button", { name: "Delete" }).count()).toBe(0);

    // The sections they cannot open are not listed, and their addresses say so (not a 403).
    for (const [path, what] of [
      ["users", "manage users"],
      ["groups", "manage groups and permissions"],
      ["clients", "manage OAuth2 clients"],
    ]) {
      await page.goto(`${base}/admin/${path}`);
      await page.getByText(`Your groups do not allow you to ${what}.`).waitFor();
      expect(await adminSections(page)).toEqual(["Machines", "Axes", "Tools"]);
    }
    await shot(page, "manager-admin-groups");
    expect(
      asked.filter((path) => /^\/(users|groups|permissions|o\/clients)\/$/.test(path)),
    ).toEqual([]);
    await t.inject({ method: "DELETE", url: `/data/machines/${id}/`, headers: t.adminAuth });
    await page.context().close();
  });

  it("brings the edit form of a row far down into view on a phone, focused, and returns focus after", async () => {
    const page = await newPage({ width: 390, height: 844 });
    await signIn(page, people.admin);
    await page.goto(`${base}/admin/machines`);
    const last = fleet[fleet.length - 1]!;
    const row = page.getByRole("row", { name: new RegExp(`^${last.machine_id} `) });
    const edit = row.getByRole("button", { name: "Edit" });
    const onScreen = async (name: string) => {
      const box = await page.getByRole("form", { name }).boundingBox();
      return box !== null && box.y >= 0 && box.y < 844 - 100;
    };
    const focusedField = () =>
      page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.name);

    for (const close of ["Cancel", "Save changes"]) {
      await edit.click();
      const name = `Edit machine ${last.machine_id}`;
      await page.getByRole("form", { name }).waitFor();
      await expect.poll(() => onScreen(name)).toBe(true);
      // The id cannot change: the first field to edit is the name.
      await expect.poll(focusedField).toBe("machine_name");
      await page.getByRole("form", { name }).getByRole("button", { name: close }).click();
      await page.getByRole("form", { name }).waitFor({ state: "detached" });
      await expect
        .poll(() => edit.evaluate((button) => button === document.activeElement))
        .toBe(true);
    }
    await page.getByText(`Saved machine ${last.machine_id}.`).waitFor();
    await page.context().close();
  });

  it("returns focus to Delete when its question is cancelled, by button or Escape", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    await page.goto(`${base}/admin/machines`);
    const machine = fleet[1]!;
    const row = page.getByRole("row", { name: new RegExp(`^${machine.machine_id} `) });
    const remove = row.getByRole("button", { name: "Delete" });
    const cancel = row.getByRole("button", { name: "Cancel" });
    const focused = (button: typeof remove) =>
      button.evaluate((element) => element === document.activeElement);

    for (const withdraw of ["Enter", "Escape"]) {
      await remove.focus();
      await page.keyboard.press("Enter");
      await expect.poll(() => focused(cancel), { timeout: 15_000 }).toBe(true);
      // Enter on the focused Cancel; Escape from it.
      await page.keyboard.press(withdraw);
      await cancel.waitFor({ state: "detached" });
      await expect.poll(() => focused(remove), { timeout: 15_000 }).toBe(true);
    }
    await page.context().close();
  });

  it("keeps the keyboard's place through a save: on the button while it is out, then on the field to correct or the button that opened the form", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    // Each create is held until the test has seen where the focus is while it is out.
    const { held } = await holdRequests(page, /\/(data\/machines|register)\/$/, "POST");
    const focused = () => focusedElement(page);
    /** Presses a key on the form's submit button; the answer waits until the focus is checked. */
    const pressSubmit = async (form: ReturnType<Page["getByRole"]>, key: string) => {
      await form.locator("button[type=submit]").focus();
      const pending = held.length;
      await page.keyboard.press(key);
      await expect.poll(() => held.length).toBe(pending + 1);
      // Rendered as busy (said to be disabled, or, as it was, disabled) before focus is read.
      await expect
        .poll(() =>
          form
            .locator("button[type=submit]")
            .evaluate(
              (button) =>
                (button as HTMLButtonElement).disabled ||
                button.getAttribute("aria-disabled") === "true",
            ),
        )
        .toBe(true);
      expect(await focused()).toMatch(/^button /);
      held.shift()!();
    };

    await page.goto(`${base}/admin/machines`);
    await page.getByRole("button", { name: "New machine" }).focus();
    await page.keyboard.press("Enter");
    const form = page.getByRole("form", { name: "New machine" });
    const id = nextMachineId();
    await form.getByLabel("Machine id").fill(String(id));
    await form.getByLabel("Name").fill("Keyboard Mill #1");
    await form.getByLabel("Tool capacity").fill("many");
    // Refused: the focus goes to the field to correct.
    await pressSubmit(form, "Space");
    await form.locator("[data-field-error=tool_capacity]").waitFor();
    await expect.poll(focused).toBe("input tool_capacity");
    // Accepted: the form closes, and the focus goes back to the button that opened it.
    await form.getByLabel("Tool capacity").fill("12");
    await pressSubmit(form, "Enter");
    await page.getByText(`Saved machine ${id}.`).waitFor();
    await expect.poll(focused).toBe("button New machine");

    await page.goto(`${base}/admin/users`);
    await page.getByRole("button", { name: "New user" }).focus();
    await page.keyboard.press("Enter");
    const userForm = page.getByRole("form", { name: "New user" });
    const username = uniqueName("keyboard");
    await userForm.getByLabel("Username").fill(username);
    await userForm.getByLabel("Password").fill(testPassword);
    await pressSubmit(userForm, "Space");
    await page.getByText(`Created user ${username}.`).waitFor();
    await expect.poll(focused).toBe("button New user");
    // The same name again is refused: the focus goes to the username.
    await page.keyboard.press("Enter");
    await userForm.getByLabel("Username").fill(username);
    await userForm.getByLabel("Password").fill(testPassword);
    await pressSubmit(userForm, "Enter");
    await userForm.locator("[data-field-error=username]").waitFor();
    await expect.poll(focused).toBe("input username");
    await page.context().close();
  });

  it("keeps the keyboard's place through a delete, a discard and a download: never dropped to the page's top", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    const id = nextMachineId();
    await arrange("/data/machines/", {
      machine_id: id,
      machine_name: "Doomed Mill #1",
      tool_capacity: 12,
    });
    // The delete is held until the test has seen where the focus is while it is out.
    const { held } = await holdRequests(page, new RegExp(`/data/machines/${id}/$`), "DELETE");
    const focused = () => focusedElement(page);

    await page.goto(`${base}/admin/machines`);
    const row = page.getByRole("row", { name: new RegExp(`^${id} Doomed Mill #1`) });
    await row.getByRole("button", { name: "Delete", exact: true }).focus();
    // Delete asks, with the focus on Cancel; Shift+Tab reaches Yes, Space answers it.
    await page.keyboard.press("Enter");
    await expect.poll(focused).toBe("button Cancel");
    await page.keyboard.press("Shift+Tab");
    expect(await focused()).toBe("button Yes, delete");
    await page.keyboard.press("Space");
    await expect.poll(() => held.length).toBe(1);
    const yes = row.getByRole("button", { name: "Yes, delete" });
    await expect.poll(() => yes.getAttribute("aria-disabled")).toBe("true");
    expect(await focused()).toBe("button Yes, delete");
    // A second press while it is out sends nothing more.
    await page.keyboard.press("Enter");
    held.shift()!();
    await page.getByText(`Deleted machine ${id}.`).waitFor();
    await expect.poll(() => row.count()).toBe(0);
    // The row is gone: the focus is on the list's heading, not on the page's top.
    await expect.poll(focused).toBe("h2 Machines");
    expect(held.length).toBe(0);
    expect(
      (await t.inject({ url: `/data/machines/${id}/`, headers: t.adminAuth })).statusCode,
    ).toBe(404);

    // Discard goes with the edits it discards: the focus moves on to Save beside it.
    await page.goto(`${base}/admin/groups`);
    const box = page.getByRole("checkbox", { name: "Operator: machine.add" });
    await box.focus();
    await page.keyboard.press("Space");
    expect(await box.isChecked()).toBe(true);
    await page.getByRole("button", { name: "Discard" }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("button", { name: "Discard" }).waitFor({ state: "detached" });
    expect(await box.isChecked()).toBe(false);
    await expect.poll(focused).toBe("button Save changes");

    // A CSV download keeps its button, and the focus on it, while it is out; a second press
    // meanwhile asks for nothing more.
    const { held: heldDownloads, seen: downloads } = await holdRequests(
      page,
      /\/api\/axis-data\/\?.*format=csv/,
    );
    await page.goto(`${base}/history`);
    const bucketsButton = page.getByRole("button", { name: "Download buckets (CSV)" });
    await bucketsButton.focus();
    await page.keyboard.press("Enter");
    await expect.poll(() => heldDownloads.length).toBe(1);
    const preparing = page.getByRole("button", { name: "Preparing CSV…" });
    await expect.poll(() => preparing.getAttribute("aria-disabled")).toBe("true");
    expect(await focused()).toBe("button Preparing CSV…");
    await page.keyboard.press("Enter");
    await page.keyboard.press("Space");
    heldDownloads.shift()!();
    await bucketsButton.waitFor();
    expect(await focused()).toBe("button Download buckets (CSV)");
    expect(downloads.length).toBe(1);
    await page.context().close();
  });

  it("keeps every admin table's Delete on a phone's screen, where a finger can reach it", async () => {
    const page = await newPage({ width: 390, height: 844 });
    await signIn(page, people.admin);
    const reachable: Record<string, boolean> = {};
    for (const path of ["machines", "axes", "tools", "users", "clients"]) {
      await page.goto(`${base}/admin/${path}`);
      const remove = page.getByRole("table").getByRole("button", { name: "Delete" }).first();
      await remove.waitFor();
      // On screen and not under anything else: what a tap at its middle reaches is the button.
      reachable[path] = await remove.evaluate((button) => {
        const box = button.getBoundingClientRect();
        const x = box.left + box.width / 2;
        const y = box.top + box.height / 2;
        return (
          box.left >= 0 &&
          box.right <= window.innerWidth &&
          button.contains(document.elementFromPoint(x, y))
        );
      });
    }
    await shot(page, "phone-admin-clients");
    expect(reachable).toEqual({
      machines: true,
      axes: true,
      tools: true,
      users: true,
      clients: true,
    });
    await page.context().close();
  });

  it("lets a Supervisor add a machine, but offers no edit or delete", async () => {
    const page = await newPage();
    await signIn(page, people.supervisor);
    await page.getByRole("link", { name: "Administration" }).click();
    const table = page.getByRole("table", { name: "Machines" });
    await table.waitFor();
    expect(await adminSections(page)).toEqual(["Machines", "Axes", "Tools"]);
    expect(await table.getByRole("button").count()).toBe(0);
    expect(await table.getByRole("columnheader", { name: "Actions" }).count()).toBe(0);

    await page.getByRole("button", { name: "New machine" }).click();
    const form = page.getByRole("form", { name: "New machine" });
    const id = nextMachineId();
    await form.getByLabel("Machine id").fill(String(id));
    await form.getByLabel("Name").fill("Okuma Genos M560 #1");
    await form.getByLabel("Tool capacity").fill("32");
    await form.getByRole("button", { name: "Create machine" }).click();
    await page.getByText(`Saved machine ${id}.`).waitFor();
    await table.getByRole("row", { name: new RegExp(`^${id} Okuma`) }).waitFor();
    expect(await table.getByRole("button").count()).toBe(0);
    await shot(page, "supervisor-machines");

    await page.getByRole("link", { name: "Axes", exact: true }).click();
    await page.getByRole("button", { name: "New axis" }).waitFor();
    await page
      .getByRole("combobox", { name: /^Machine/ })
      .selectOption(String(fleet[0]!.machine_id));
    const axes = page.getByRole("table", { name: "Axes" });
    await axes.getByRole("row", { name: /^\d+ X / }).waitFor();
    expect(await axes.getByRole("button").count()).toBe(0);
    await t.inject({ method: "DELETE", url: `/data/machines/${id}/`, headers: t.adminAuth });
    await page.context().close();
  });

  it("shows an Admin every administration section and every action", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("table", { name: "Users" }).waitFor();
    expect(await adminSections(page)).toEqual([
      "Users",
      "Groups & permissions",
      "OAuth2 clients",
      "Machines",
      "Axes",
      "Tools",
    ]);
    await page.getByRole("button", { name: "New user" }).waitFor();
    await page.getByRole("link", { name: "Machines", exact: true }).click();
    await page.getByRole("button", { name: "New machine" }).waitFor();
    const row = page.getByRole("row", { name: new RegExp(`^${fleet[0]!.machine_id} `) });
    await row.getByRole("button", { name: "Edit" }).waitFor();
    await row.getByRole("button", { name: "Delete" }).waitFor();
    await page.context().close();
  });

  it("knows the account by its own name when signed in with other capitals: no Delete on oneself", async () => {
    const username = uniqueName("caseadmin");
    await t.services.users.createUser({ username, password: testPassword }, ["Admin"]);
    const page = await newPage();
    await signIn(page, username.toUpperCase());
    await expect.poll(() => page.locator(".user-name").textContent()).toBe(username);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("table", { name: "Users" }).waitFor();
    const own = page.getByRole("row", { name: new RegExp(`^${username} `) });
    const other = page.getByRole("row", { name: new RegExp(`^${people.operator} `) });
    await other.getByRole("button", { name: "Delete" }).waitFor();
    expect(await own.getByRole("button", { name: "Delete" }).count()).toBe(0);

    // Leaving the Admin group takes administration away from this very console.
    await own.getByRole("checkbox", { name: "Admin", exact: true }).click();
    await expect.poll(() => page.getByRole("link", { name: "Administration" }).count()).toBe(0);
    await page.context().close();
  });

  it("lets a person in no group change their own password on the Account page, staying signed in there", async () => {
    // Their own user: the people the other tests sign in as keep testPassword.
    const username = uniqueName("changer");
    const newPassword = "Lathe-Spindle-Coolant-7";
    await t.services.users.createUser(
      { username, password: testPassword, email: `${username}@example.com`, first_name: "Ada" },
      [],
    );
    const sent: string[] = [];
    const page = await newPage();
    page.on("request", (request) => {
      if (new URL(request.url()).pathname === "/users/me/password/")
        sent.push(request.postData() ?? "");
    });
    await signIn(page, username);
    // The same person in another browser, to be signed out by the change.
    const elsewhere = await newPage();
    await signIn(elsewhere, username);
    const other = await storedTokens(elsewhere);

    await page.getByRole("link", { name: `${username} (your account)` }).click();
    await page.getByRole("heading", { name: "Account", level: 1 }).waitFor();
    await expect.poll(() => page.title()).toBe("Account · Spindle");
    const details = page.locator("dl.details");
    await details.getByText(username, { exact: true }).waitFor();
    expect(await details.locator("dd").allTextContents()).toEqual([
      username,
      "Ada",
      `${username}@example.com`,
      "none",
    ]);

    const form = page.getByRole("form", { name: "Change password" });
    const current = form.getByLabel("Current password");
    const fresh = form.getByLabel("New password", { exact: true });
    const again = form.getByLabel("New password again");
    const submit = form.getByRole("button", { name: "Change password" });
    expect(await current.getAttribute("autocomplete")).toBe("current-password");
    expect(await fresh.getAttribute("autocomplete")).toBe("new-password");
    expect(await again.getAttribute("autocomplete")).toBe("new-password");
    const isFocused = (field: typeof current) =>
      field.evaluate((element) => element === document.activeElement);

    // A wrong current password: the server's reason, beside that field, which takes the focus.
    await current.fill("not the password");
    await fresh.fill(newPassword);
    await again.fill(newPassword);
    await submit.click();
    const oldError = form.locator('[data-field-error="old_password"]');
    await oldError.waitFor();
    expect(await oldError.textContent()).toBe(
      "Your old password was entered incorrectly. Please enter it again.",
    );
    expect(await current.getAttribute("aria-invalid")).toBe("true");
    expect(await current.getAttribute("aria-describedby")).toBe(await oldError.getAttribute("id"));
    await expect.poll(() => isFocused(current)).toBe(true);
    expect(sent).toHaveLength(1);
    await shot(page, "account-wrong-password");

    // New passwords that differ: said in the browser, and nothing is sent.
    await current.fill(testPassword);
    await again.fill(`${newPassword}x`);
    await submit.click();
    const mismatch = form.locator('[data-field-error="new_password_again"]');
    await mismatch.getByText("The two new passwords do not match.", { exact: false }).waitFor();
    await expect.poll(() => isFocused(again)).toBe(true);
    expect(await oldError.count()).toBe(0);
    expect(sent).toHaveLength(1);

    await again.fill(newPassword);
    await submit.click();
    await form
      .getByRole("status")
      .getByText("Password changed. Your other sessions have ended.")
      .waitFor();
    expect(sent.map((body) => JSON.parse(body))).toEqual([
      { old_password: "not the password", new_password: newPassword },
      { old_password: testPassword, new_password: newPassword },
    ]);
    expect([
      await current.inputValue(),
      await fresh.inputValue(),
      await again.inputValue(),
    ]).toEqual(["", "", ""]);
    expect(await form.locator(".field-error, .form-error").count()).toBe(0);
    await shot(page, "account-changed");

    // The new password signs in, the old one no longer does.
    const signInWith = (password: string) =>
      t.token({ grant_type: "password", username, password });
    expect((await signInWith(newPassword)).statusCode).toBe(200);
    expect((await signInWith(testPassword)).statusCode).toBe(400);

    // This session stays: its tokens are good, and the page loads again without signing in.
    const kept = await storedTokens(page);
    expect(await tokenActive(kept!.access)).toBe(true);
    expect(await tokenActive(kept!.refresh)).toBe(true);
    await page.reload();
    await page.locator("dl.details").getByText(username, { exact: true }).waitFor();
    expect(await page.getByRole("heading", { name: "Sign in" }).count()).toBe(0);

    // The other browser's session has ended: it is back at sign-in (by its live socket's
    // closing or at its next request, whichever comes first).
    expect(await tokenActive(other!.access)).toBe(false);
    expect(await tokenActive(other!.refresh)).toBe(false);
    await elsewhere.reload();
    await elsewhere.getByRole("heading", { name: "Sign in" }).waitFor();
    await elsewhere.context().close();
    await page.context().close();
  });

  it("shows the Account page in dark mode too", async () => {
    const page = await newPage({ dark: true });
    await signIn(page, people.operator);
    await page.getByRole("link", { name: `${people.operator} (your account)` }).click();
    await page.locator("dl.details").getByText("Operator", { exact: true }).waitFor();
    await shot(page, "account-dark");
    await page.context().close();
  });

  it("shows a group that may only view users, groups and clients, offering it nothing to change", async () => {
    // Permissions are data: an Admin can make a group of auditors, who see everything.
    const group = uniqueName("Auditors");
    await arrange("/groups/", { name: group });
    const codes = [
      "user",
      "group",
      "oauthclient",
      "machine",
      "axis",
      "axisdata",
      "tool",
      "toolusage",
    ];
    const views = codes.map((resource) => `${resource}.view`);
    const put = await t.inject({
      method: "PUT",
      url: `/groups/${group}/permissions/`,
      headers: t.adminAuth,
      payload: { permissions: views },
    });
    expect(put.statusCode).toBe(200);
    const auditor = uniqueName("auditor");
    await t.services.users.createUser({ username: auditor, password: testPassword }, [group]);

    const page = await newPage();
    const failures = watchFailures(page);
    await signIn(page, auditor);
    await page.getByRole("link", { name: "Administration" }).click();
    const users = page.getByRole("table", { name: "Users" });
    await users.getByRole("rowheader", { name: auditor }).waitFor();
    expect(await adminSections(page)).toEqual(["Users", "Groups & permissions", "OAuth2 clients"]);
    expect(await page.getByRole("button", { name: "New user" }).count()).toBe(0);
    expect(await users.getByRole("button").count()).toBe(0);
    const inputs = users.getByRole("checkbox");
    expect(await inputs.count()).toBeGreaterThan(0);
    expect(
      await inputs.evaluateAll((boxes) => boxes.every((box) => (box as HTMLInputElement).disabled)),
    ).toBe(true);

    await page.getByRole("link", { name: "Groups & permissions" }).click();
    await page.getByRole("checkbox", { name: `${group}: user.view` }).waitFor();
    expect(await page.getByRole("checkbox", { name: `${group}: user.view` }).isDisabled()).toBe(
      true,
    );
    expect(await page.getByRole("button", { name: /^Save changes/ }).count()).toBe(0);
    expect(await page.getByRole("form", { name: "New group" }).count()).toBe(0);

    await page.getByRole("link", { name: "OAuth2 clients" }).click();
    await page.getByRole("rowheader", { name: consoleClient.clientId }).waitFor();
    expect(await page.getByRole("button", { name: "New client" }).count()).toBe(0);
    expect(
      await page.getByRole("table", { name: "OAuth2 clients" }).getByRole("button").count(),
    ).toBe(0);
    await shot(page, "auditor-clients");
    expect(failures).toEqual([]);
    await page.context().close();
  });

  it("asks before leaving unsaved permission edits: in the console, going back, closing the tab", async () => {
    const page = await newPage();
    const dialogs: string[] = [];
    let leave = false;
    page.on("dialog", (dialog) => {
      dialogs.push(`${dialog.type()}${dialog.message() ? `: ${dialog.message()}` : ""}`);
      void (leave ? dialog.accept() : dialog.dismiss());
    });
    await signIn(page, people.admin);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("link", { name: "Groups & permissions" }).click();
    const box = page.getByRole("checkbox", { name: "Operator: machine.add" });
    await box.check();
    // Creating a group meanwhile keeps the edit; the new group joins the matrix.
    const cell = uniqueName("Cell");
    await page.getByRole("form", { name: "New group" }).getByLabel("New group").fill(cell);
    await page.getByRole("button", { name: "Create group" }).click();
    await page.getByRole("checkbox", { name: `${cell}: machine.view` }).waitFor();
    expect(await box.isChecked()).toBe(true);
    const fleetLink = page.getByRole("navigation", { name: "Main" }).getByRole("link", {
      name: "Fleet",
    });

    // A link in the console: asked, and staying keeps the edit.
    await fleetLink.click();
    await expect
      .poll(() => dialogs)
      .toEqual([
        "confirm: Leave without saving? Your changes to the groups' permissions will be lost.",
      ]);
    expect(new URL(page.url()).pathname).toBe("/admin/groups");
    expect(await box.isChecked()).toBe(true);

    // The browser's Back, and signing out.
    await page.goBack();
    await expect.poll(() => dialogs.length).toBe(2);
    expect(new URL(page.url()).pathname).toBe("/admin/groups");
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect.poll(() => dialogs.length).toBe(3);
    expect(await box.isChecked()).toBe(true);

    // Closing (or reloading) the tab: the browser's own question.
    await page.close({ runBeforeUnload: true });
    await expect.poll(() => dialogs.at(-1)?.startsWith("beforeunload")).toBe(true);
    expect(page.isClosed()).toBe(false);
    await shot(page, "admin-groups-unsaved");

    // Discarded, nothing is asked; choosing to leave leaves, and nothing was saved.
    await page.getByRole("button", { name: "Discard" }).click();
    await page
      .getByRole("navigation", { name: "Main" })
      .getByRole("link", { name: "History" })
      .click();
    await expect.poll(() => new URL(page.url()).pathname).toBe("/history");
    expect(dialogs.length).toBe(4);
    await page.goBack();
    await box.check();
    leave = true;
    await fleetLink.click();
    await expect.poll(() => new URL(page.url()).pathname).toBe("/");
    expect(dialogs.length).toBe(5);
    expect(dialogs[4]).toMatch(/^confirm: /);
    const operator = await t.inject({ url: "/groups/Operator/", headers: t.adminAuth });
    expect(operator.json().permissions).not.toContain("machine.add");
    await page.context().close();
  });

  it("replaces an old message with the new outcome: on sign-in, and after creating a user", async () => {
    const page = await newPage();
    await signIn(page, people.admin);
    await page.locator(".tile").first().waitFor();
    const stored = await page.evaluate(() => localStorage.getItem("spindle.session"));
    const tokens = JSON.parse(stored ?? "{}") as { access: string; refresh: string };
    for (const token of [tokens.refresh, tokens.access]) {
      await t.inject({
        method: "POST",
        url: "/o/revoke_token/",
        payload: { token, client_id: consoleClient.clientId },
      });
    }
    // The live socket is closed for its revoked token, and the renewal is refused.
    const ended = page.getByText("Your session has ended. Please sign in again.");
    await ended.waitFor();
    await page.getByLabel("Username").fill(people.admin);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Wrong username or password.").waitFor();
    expect(await ended.count()).toBe(0);

    await signIn(page, people.admin);
    await page.goto(`${base}/admin/users`);
    const username = uniqueName("tempuser");
    await page.getByRole("button", { name: "New user" }).click();
    const form = page.getByRole("form", { name: "New user" });
    await form.getByLabel("Username").fill(username);
    await form.getByLabel("Password").fill(testPassword);
    await form.getByRole("button", { name: "Create user" }).click();
    const created = page.getByText(`Created user ${username}.`);
    await created.waitFor();
    // The same name again: refused, and the success before it is not left beside the refusal.
    await page.getByRole("button", { name: "New user" }).click();
    await form.getByLabel("Username").fill(username);
    await form.getByLabel("Password").fill(testPassword);
    await form.getByRole("button", { name: "Create user" }).click();
    await form.locator(".field-error, .form-error").first().waitFor();
    expect(await created.count()).toBe(0);
    await page.context().close();
  });

  it("shows a banner while Spindle cannot be reached, and returns to sign-in when the session ends", async () => {
    const page = await newPage();
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    await page.route("**/data/**", (route) => route.abort("internetdisconnected"));
    await page.getByText("Connection to Spindle lost").waitFor();
    await shot(page, "connection-lost", false);
    await page.unroute("**/data/**");
    // The fleet list reloads every 10 s (live values come over the WebSocket, not /data/).
    await expect
      .poll(() => page.getByText("Connection to Spindle lost").count(), { timeout: 20_000 })
      .toBe(0);

    // The session's tokens are revoked elsewhere: the next request's 401 leads back to sign-in.
    const stored = await page.evaluate(() => localStorage.getItem("spindle.session"));
    const tokens = JSON.parse(stored ?? "{}") as { access: string; refresh: string };
    for (const token of [tokens.refresh, tokens.access]) {
      await t.inject({
        method: "POST",
        url: "/o/revoke_token/",
        payload: { token, client_id: consoleClient.clientId },
      });
    }
    await page.getByText("Your session has ended. Please sign in again.").waitFor();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await shot(page, "session-ended");

    await signIn(page, people.manager);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    expect(await page.evaluate(() => localStorage.getItem("spindle.session"))).toBeNull();
    await page.context().close();
  });

  it("keeps the session through a renewal answered 502 by a proxy, and renews on the next try", async () => {
    const page = await newPage();
    await page.clock.install();
    const answers: number[] = [];
    let failNext = true;
    await page.route("**/o/token/", async (route) => {
      if (failNext && route.request().postData()?.includes("refresh_token")) {
        failNext = false;
        answers.push(502);
        await route.fulfill({
          status: 502,
          contentType: "text/html",
          body: "<h1>Bad gateway</h1>",
        });
        return;
      }
      const response = await route.fetch();
      answers.push(response.status());
      await route.fulfill({ response });
    });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    // To the renewal at 80% of the token's 10 h.
    await page.clock.fastForward(36_000 * 800 + 5_000);
    await expect.poll(() => answers).toEqual([200, 502]);
    await page.waitForTimeout(500);
    expect(await page.getByRole("heading", { name: "Sign in" }).count()).toBe(0);
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    // The renewal is tried again 15 s later.
    await page.clock.fastForward(16_000);
    await expect.poll(() => answers).toEqual([200, 502, 200]);
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await page.context().close();
  });

  it("asks for a renewal again on its timer, not on every 401, while renewals fail", async () => {
    const page = await newPage();
    const attempts: number[] = [];
    await page.route("**/o/token/", (route) => {
      if (!route.request().postData()?.includes("refresh_token")) return route.continue();
      attempts.push(Date.now());
      return route.fulfill({ status: 502, contentType: "text/html", body: "<h1>Bad gateway</h1>" });
    });
    await signIn(page, people.manager);
    await page.locator(".tile").first().waitFor();
    // The access token stops working: the live socket closes (4401) and reconnects with
    // backoff, and every request the pages make answers 401.
    await revokeAccessToken(page);
    await expect.poll(() => attempts.length).toBeGreaterThan(0);
    await page.waitForTimeout(6_000);
    expect(attempts).toHaveLength(1);
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await page.context().close();
  });

  it("brings the live feed back when its token is revoked while the renewal cannot reach Spindle", async () => {
    const page = await newPage();
    await signIn(page, people.manager);
    const machine = fleet[3]!;
    const tile = page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
    await tile.waitFor();
    let offline = true;
    await page.route("**/o/token/", (route) =>
      offline && route.request().postData()?.includes("refresh_token")
        ? route.abort("internetdisconnected")
        : route.continue(),
    );
    // Revoked elsewhere: Spindle closes the live socket (4401) and the console renews, which
    // fails while the network is away.
    const access = await revokeAccessToken(page);
    await page.waitForTimeout(1500);
    offline = false;
    await expect
      .poll(
        () => page.evaluate(() => JSON.parse(localStorage.getItem("spindle.session")!).access),
        { timeout: 10_000 },
      )
      .not.toBe(access);
    await ingestOne({ machine_id: machine.machine_id, axis_name: "Y", actual_position: 4321.5 });
    await expect.poll(() => tile.textContent(), { timeout: 10_000 }).toContain("4321.5");
    await page.context().close();
  });

  /**
   * Two tabs of one browser hold the same tokens and both renew at 80% of their 10 h life, at
   * the same moment. The session must survive in both: one renewal, whose tokens both adopt.
   */
  async function renewInTwoTabsAtOnce(origin: string, secureContext: boolean) {
    const first = await newPage();
    await first.clock.install();
    /** The status of each refresh grant either tab asked for. */
    const renewals: number[] = [];
    first.context().on("response", (response) => {
      if (
        response.url().endsWith("/o/token/") &&
        response.request().postData()?.includes("refresh_token")
      )
        renewals.push(response.status());
    });
    await signIn(first, people.manager, origin);
    await first.locator(".tile").first().waitFor();
    expect(await first.evaluate(() => [isSecureContext, "locks" in navigator])).toEqual([
      secureContext,
      secureContext,
    ]);
    const second = await openTab(first);
    await second.locator(".tile").first().waitFor();
    const signedIn = (await storedTokens(first))!;

    // The clock jumps in both tabs at once.
    await first.clock.fastForward(36_000 * 800 + 5_000);
    await expect.poll(() => renewals, { timeout: 10_000 }).toEqual([200]);
    await expect.poll(async () => (await storedTokens(first))?.access).not.toBe(signedIn.access);
    const renewed = (await storedTokens(first))!;
    // Had a tab presented the used refresh token again, Spindle would have revoked these.
    expect(await tokenActive(renewed.access)).toBe(true);
    expect(await tokenActive(renewed.refresh)).toBe(true);

    // Both tabs keep working on the renewed tokens: live values, then a page read over REST.
    for (const [index, tab] of [first, second].entries()) {
      const machine = fleet[4 + index]!;
      const tile = tab.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
      const position = 3000 + 10 * index + (secureContext ? 1.5 : 2.5);
      await ingestOne({
        machine_id: machine.machine_id,
        axis_name: "X",
        actual_position: position,
      });
      await expect.poll(() => tile.textContent(), { timeout: 10_000 }).toContain(String(position));
      await tile.click();
      await tab.getByRole("heading", { name: machine.machine_name }).waitFor();
      await tab
        .getByRole("table", { name: "Latest axis values" })
        .getByRole("rowheader", { name: "X" })
        .waitFor();
      expect(await tab.getByRole("heading", { name: "Sign in" }).count()).toBe(0);
    }
    expect(renewals).toEqual([200]);
    expect(await storedTokens(second)).toEqual(renewed);
    await first.context().close();
  }

  it("keeps one session in two tabs that renew at once: one renewal, both tabs carry on", async () => {
    await renewInTwoTabsAtOnce(base, true);
  });

  it("keeps one session in two tabs that renew at once over plain http on a LAN address (no Web Locks)", async () => {
    await renewInTwoTabsAtOnce(base.replace("127.0.0.1", lanHost), false);
  });

  /**
   * Two tabs renew at once and the renewal that goes out hangs: it is given up after its 15 s,
   * letting go of the renewal lock (or the lease standing in for it), and the other tab renews.
   */
  async function renewAfterAHungRenewal(origin: string) {
    const first = await newPage();
    await first.clock.install();
    /** The status of each refresh grant answered; the first is held and never answered. */
    const renewals: number[] = [];
    let unanswered = 0;
    const renewal = (request: Request) =>
      request.url().endsWith("/o/token/") && request.postData()?.includes("refresh_token");
    first.context().on("response", (response) => {
      if (renewal(response.request())) renewals.push(response.status());
    });
    await first.context().route("**/o/token/", async (route) => {
      if (!renewal(route.request()) || unanswered > 0) return route.continue();
      unanswered++;
    });
    await signIn(first, people.manager, origin);
    await first.locator(".tile").first().waitFor();
    const second = await openTab(first);
    await second.locator(".tile").first().waitFor();
    const signedIn = (await storedTokens(first))!;

    // Both tabs renew at 80% of the token's 10 h: one holds the renewal lock, its request hangs.
    await first.clock.fastForward(36_000 * 800 + 5_000);
    await expect.poll(() => unanswered).toBe(1);
    await first.waitForTimeout(500);
    expect(renewals).toEqual([]);
    // Past the 15 s the request is given: the lock is let go, and the other tab renews.
    await first.clock.fastForward(16_000);
    await expect.poll(() => renewals).toEqual([200]);
    await expect.poll(async () => (await storedTokens(first))?.access).not.toBe(signedIn.access);
    await expect.poll(async () => (await storedTokens(second))?.access).not.toBe(signedIn.access);
    const renewed = (await storedTokens(first))!;
    expect(await tokenActive(renewed.refresh)).toBe(true);
    for (const tab of [first, second]) {
      await tab.getByRole("button", { name: "Sign out" }).waitFor();
      expect(await tab.getByRole("heading", { name: "Sign in" }).count()).toBe(0);
    }
    await first.context().close();
  }

  it("gives up a renewal Spindle never answers, so the other tab renews once the time given has passed", async () => {
    await renewAfterAHungRenewal(base);
  });

  it("gives up a renewal Spindle never answers over plain http on a LAN address too (the lease's turn)", async () => {
    await renewAfterAHungRenewal(base.replace("127.0.0.1", lanHost));
  });

  it("says Spindle cannot be reached when a sign-in gets no answer in time, and signs in on the next try", async () => {
    const page = await newPage();
    await page.clock.install();
    let unanswered = 0;
    await page.route("**/o/token/", async (route) => {
      if (unanswered > 0) return route.continue();
      unanswered++;
    });
    await page.goto(`${base}/`);
    await page.getByLabel("Username").fill(people.manager);
    await page.getByLabel("Password").fill(testPassword);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => unanswered).toBe(1);
    await page.clock.fastForward(16_000);
    await page.getByText("Spindle cannot be reached.").waitFor();
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await page.context().close();
  });

  it("signs out every tab when one signs out, and signs in every tab at sign-in when one does", async () => {
    const first = await newPage();
    await signIn(first, people.manager);
    await first.locator(".tile").first().waitFor();
    const second = await openTab(first);
    await second.locator(".tile").first().waitFor();
    const renewals: string[] = [];
    second.on("request", (request) => {
      if (request.url().endsWith("/o/token/")) renewals.push(request.postData() ?? "");
    });

    await first.getByRole("button", { name: "Sign out" }).click();
    await first.getByRole("heading", { name: "Sign in" }).waitFor();
    // The other tab follows at once: not after a request of its own met a 401 (which would
    // try a renewal, then say "Your session has ended").
    await second.getByRole("heading", { name: "Sign in" }).waitFor();
    expect(await second.getByText("Your session has ended").count()).toBe(0);
    expect(renewals).toEqual([]);

    await signIn(second, people.manager);
    await first.getByRole("button", { name: "Sign out" }).waitFor();
    await first.locator(".tile").first().waitFor();
    await first.context().close();
  });

  it("says the session has ended in every tab when Spindle refuses the renewal in one", async () => {
    const first = await newPage();
    await signIn(first, people.manager);
    await first.locator(".tile").first().waitFor();
    // The other tab is on a page with no live feed: only the first meets the refusal.
    const second = await openTab(first);
    await second.goto(`${base}/account`);
    await second.getByRole("heading", { name: "Account", exact: true }).waitFor();
    const renewals: string[] = [];
    second.on("request", (request) => {
      if (request.url().endsWith("/o/token/")) renewals.push(request.postData() ?? "");
    });

    // Revoked elsewhere (a password changed in another browser, say): the first tab's live
    // socket is closed for its token, and its renewal is refused.
    const tokens = (await storedTokens(first))!;
    for (const token of [tokens.refresh, tokens.access]) {
      await t.inject({
        method: "POST",
        url: "/o/revoke_token/",
        payload: { token, client_id: consoleClient.clientId },
      });
    }
    for (const tab of [first, second]) {
      await tab.getByRole("heading", { name: "Sign in" }).waitFor();
      await tab.getByText("Your session has ended. Please sign in again.").waitFor();
    }
    expect(renewals).toEqual([]);

    // Signed in again, then out on purpose: no notice in either tab.
    await signIn(second, people.manager);
    await first.getByRole("button", { name: "Sign out" }).waitFor();
    await second.getByRole("button", { name: "Sign out" }).click();
    for (const tab of [first, second]) {
      await tab.getByRole("heading", { name: "Sign in" }).waitFor();
      expect(await tab.getByText("Your session has ended").count()).toBe(0);
    }
    await first.context().close();
  });

  it("polls when the WebSocket never opens, with one polling loop however the fleet scrolls", async () => {
    const page = await newPage({ height: 420 });
    // A proxy without WebSocket: every socket closes before it opens.
    await page.routeWebSocket(/\/ws\/machine_data\/$/, (socket) => socket.close());
    await signIn(page, people.manager);
    await page.getByText("updated every 2 s", { exact: false }).first().waitFor();
    const machine = fleet[0]!;
    const tile = page.getByRole("link", { name: new RegExp(`^${machine.machine_name},`) });
    await ingestOne({ machine_id: machine.machine_id, axis_name: "Z", actual_position: 8642.5 });
    await expect.poll(() => tile.textContent(), { timeout: 10_000 }).toContain("8642.5");

    // On a slow network (each request 300 ms), each scroll changes the machines on screen
    // while a round is under way.
    await page.route(/\/data\/axises\//, async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await route.continue();
    });
    for (let i = 0; i < 24; i++) {
      await page.mouse.wheel(0, i % 2 === 0 ? 700 : -700);
      await page.waitForTimeout(120);
    }
    const requests = new Map<string, number>();
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.pathname !== "/data/axises/") return;
      const id = url.searchParams.get("machine")!;
      requests.set(id, (requests.get(id) ?? 0) + 1);
    });
    await page.waitForTimeout(4_500);
    // One loop asks for each machine once a round, a round every 2 s or more.
    expect(requests.size).toBeGreaterThan(0);
    expect(Math.max(...requests.values())).toBeLessThanOrEqual(3);
    await page.context().close();
  });

  it("renders only the tiles on screen with 1,000 machines", async () => {
    const rows = Array.from({ length: 980 }, (_, i) => {
      const machine_id = 90_000_000 + (process.pid % 1000) * 1000 + i;
      return `(${machine_id}, 'Cell ${String(i + 1).padStart(4, "0")}', 24)`;
    });
    await t.services.db.query(
      `insert into machine (machine_id, machine_name, tool_capacity) values ${rows.join(",")}`,
    );
    t.services.changes.changed("machine");

    const page = await newPage();
    const refused: string[] = [];
    page.on("websocket", (socket) =>
      socket.on("framereceived", ({ payload }) => {
        if (String(payload).includes("Too many subscribe")) refused.push(String(payload));
      }),
    );
    // The fleet counts what other tests left too (1,000 when each cleans up after itself).
    const listed = await t.inject({ url: "/data/machines/?limit=1", headers: t.adminAuth });
    const total = Number(listed.headers["x-total-count"]);
    expect(total).toBeGreaterThanOrEqual(1000);
    await signIn(page, people.manager);
    await page.getByText(`${total} machines`, { exact: false }).first().waitFor();
    const rendered = await page.locator(".tile").count();
    expect(rendered).toBeGreaterThan(0);
    expect(rendered).toBeLessThan(80);
    await page.mouse.wheel(0, 200_000);
    const last = page.getByRole("link", { name: /^VF-2SS #20,/ });
    await last.waitFor();
    expect(await page.locator(".tile").count()).toBeLessThan(80);

    // Scrolling through changes the machines on screen faster than Spindle takes subscribes (2
    // a second, bursts of 10): the tiles left on screen must still get live values.
    for (const step of [...Array(15).fill(-2000), ...Array(15).fill(2000)]) {
      await page.mouse.wheel(0, step);
      await page.waitForTimeout(60);
    }
    await page.mouse.wheel(0, 200_000);
    await last.waitFor();
    const machine = fleet.find((candidate) => candidate.machine_name === "VF-2SS #20")!;
    await page.waitForTimeout(1500);
    await ingestOne({ machine_id: machine.machine_id, axis_name: "X", actual_position: 2468.25 });
    await expect.poll(() => last.textContent(), { timeout: 5000 }).toContain("2468.3");
    expect(refused).toEqual([]);

    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, "fleet-1000", false);
    await page.context().close();
  });
});

/**
 * The browser side of scenario 9 (bench/dashboard.ts), run as its own
 * process: headless Chromium (playwright-core) on the dashboard.
 *
 *   deno run … bench/dashboard_page.ts <base-url> <seconds> <agent-with-7-days>
 *
 * 1. Opens the fleet page and, in that page, listens to the live events
 *    for `<seconds>`: for each sample, the time from its timestamp (set
 *    when it was published) to its arrival in the page.
 * 2. Opens the agent page of `<agent-with-7-days>` and times the 7 d and
 *    24 h ranges: from the click to every chart drawn (history fetched and
 *    handed to uPlot).
 *
 * Prints one JSON line with the figures. Bench support, not product code.
 *
 * @module
 */
import { launchChromium } from "../tests/harness/mod.ts";

const [base, secondsText, weekAgent] = Deno.args;
const seconds = Number(secondsText);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  const loadStart = performance.now();
  await page.goto(base);
  await page.locator("#fleet tbody tr").first().waitFor({ timeout: 60_000 });
  const fleetLoadMs = performance.now() - loadStart;
  const rows = await page.locator("#fleet tbody tr").count();
  const summary = await page.locator("#fleet-summary").textContent();

  // Arrival of every sample in the page, measured by the page itself.
  const delays = await page.evaluate(`(async () => {
    const out = [];
    const source = new EventSource("/api/events");
    source.addEventListener("samples", (event) => {
      const now = Date.now() / 1000;
      for (const s of JSON.parse(event.data)) out.push((now - s.t) * 1000);
    });
    await new Promise((resolve) => setTimeout(resolve, ${seconds * 1000}));
    source.close();
    return out;
  })()`) as number[];

  // The agent page with 7 days of history.
  const timings: Record<string, number[]> = { "7d": [], "24h": [] };
  await page.goto(`${base}#/agent/${encodeURIComponent(weekAgent)}`);
  await page.locator('.chart[data-metric="cpu"]').waitFor({ timeout: 60_000 });
  let points = 0;
  for (let run = 0; run < 5; run++) {
    for (const range of ["24h", "7d"]) {
      await page.click('button[data-range="5m"]');
      await page.waitForFunction(`document.querySelector("#charts")?.dataset.range === "5m"`);
      const started = performance.now();
      await page.click(`button[data-range="${range}"]`);
      await page.waitForFunction(
        `document.querySelector("#charts")?.dataset.range === ${JSON.stringify(range)}`,
      );
      // uPlot draws on the next animation frame.
      await page.evaluate("new Promise((r) => requestAnimationFrame(() => r(null)))");
      timings[range].push(performance.now() - started);
      if (range === "7d") {
        points = await page.evaluate(
          `[...document.querySelectorAll(".chart")].reduce((n, c) => n + Number(c.dataset.points ?? 0), 0)`,
        ) as number;
      }
    }
  }
  console.log(JSON.stringify({ fleetLoadMs, rows, summary, delays, timings, points }));
} finally {
  await browser.close();
}

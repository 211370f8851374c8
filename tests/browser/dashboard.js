#!/usr/bin/env node
// Opens mailveil's dashboard in headless Chromium (playwright-core, as render.js does),
// checks what a person would see, searches, and lists every request the page made.
// Nothing leaves the machine: every request to another origin is recorded and refused,
// and host resolution maps every name but loopback to "not found".
//
// usage: node dashboard.js URL SCREENSHOT.png SEARCH
// Prints one JSON line: {chart: {visible, width, height, bars, tallBars, knownBars,
//   heading, legend, axis}, rows, totals,
//   search: {rows, text}, requests: [{url, type}], foreign: [url...], error?}
//
// usage: node dashboard.js --banner FILE.html SCREENSHOT.png
// Renders a cleaned HTML mail (JavaScript off) in light and dark colour schemes and
// prints {banners, light: {visible, text, color, background}, dark: {...}, error?}.
//
// usage: node dashboard.js --banner-width FILE.html SCREENSHOT.png SELECTOR
// Renders it at 1280, 800 and 375 px and prints {widths: [{viewport, banners,
// banner: {x, width, y}, content: {x, width, y}}], error?}: the note's box against the
// box of SELECTOR, the mail's own layout container.
'use strict';

const { chromium } = require('playwright-core');

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-domain-reliability', '--disable-breakpad', '--no-pings',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]',
];

async function banner(file, shot) {
  const fs = require('fs');
  const html = fs.readFileSync(file, 'utf8');
  const out = {};
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    for (const scheme of ['light', 'dark']) {
      const context = await browser.newContext({ javaScriptEnabled: false, colorScheme: scheme, viewport: { width: 800, height: 600 } });
      await context.route('**/*', (route) => route.abort('blockedbyclient'));
      const page = await context.newPage();
      await page.setContent(html, { waitUntil: 'load', timeout: 20000 });
      const note = page.locator('[data-mailveil-banner]');
      out.banners = await note.count();
      const first = note.first();
      const box = await first.boundingBox();
      out[scheme] = {
        visible: await first.isVisible(),
        role: await first.getAttribute('role'),
        text: (await first.innerText()).trim(),
        top: box ? box.y : -1,
        color: await first.evaluate((el) => getComputedStyle(el).color),
        background: await first.evaluate((el) => getComputedStyle(el).backgroundColor),
        height: box ? box.height : 0,
      };
      await page.screenshot({ path: shot.replace(/\.png$/, `-${scheme}.png`) });
      await context.close();
    }
  } catch (e) {
    out.error = String(e && e.message ? e.message : e).split('\n')[0];
  } finally {
    await browser.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

// The note's box against the mail's content box (SELECTOR: the mail's own layout
// container), at a desktop, a narrow window and a phone width.
async function bannerWidth(file, shot, selector) {
  const fs = require('fs');
  const html = fs.readFileSync(file, 'utf8');
  const out = { widths: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  });
  try {
    for (const width of [1280, 800, 375]) {
      const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width, height: 900 } });
      await context.route('**/*', (route) => route.abort('blockedbyclient'));
      const page = await context.newPage();
      await page.setContent(html, { waitUntil: 'load', timeout: 20000 });
      const note = await page.locator('[data-mailveil-banner]').first().boundingBox();
      const content = await page.locator(selector).first().boundingBox();
      out.widths.push({
        viewport: width,
        banners: await page.locator('[data-mailveil-banner]').count(),
        banner: note && { x: note.x, width: note.width, y: note.y },
        content: content && { x: content.x, width: content.width, y: content.y },
      });
      await page.screenshot({ path: shot.replace(/\.png$/, `-${width}.png`) });
      await context.close();
    }
  } catch (e) {
    out.error = String(e && e.message ? e.message : e).split('\n')[0];
  } finally {
    await browser.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

async function main() {
  if (process.argv[2] === '--banner') return banner(process.argv[3], process.argv[4]);
  if (process.argv[2] === '--banner-width') return bannerWidth(process.argv[3], process.argv[4], process.argv[5]);
  const [url, shot, term] = process.argv.slice(2);
  if (!url || !shot || !term) {
    process.stderr.write('usage: node dashboard.js URL SCREENSHOT.png SEARCH\n');
    process.exit(2);
  }
  const origin = new URL(url).origin;
  const out = { requests: [], foreign: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.on('request', (req) => {
      const u = req.url();
      out.requests.push({ url: u, type: req.resourceType() });
      if (!u.startsWith('data:') && !u.startsWith(origin + '/') && u !== origin) out.foreign.push(u);
    });
    await context.route('**/*', (route) => {
      const u = route.request().url();
      if (u.startsWith(origin + '/') || u.startsWith('data:')) return route.continue();
      return route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    const resp = await page.goto(url, { waitUntil: 'networkidle', timeout: 20000 });
    out.status = resp ? resp.status() : 0;
    const chart = page.locator('#chart');
    const box = await chart.boundingBox();
    out.chart = {
      visible: await chart.isVisible(),
      width: box ? box.width : 0,
      height: box ? box.height : 0,
      bars: await page.locator('#chart rect.bar').count(),
      tallBars: await page.locator('#chart rect.bar').evaluateAll((rs) => rs.filter((r) => r.getBBox().height > 1).length),
      knownBars: await page.locator('#chart rect.known').evaluateAll((rs) => rs.filter((r) => r.getBBox().height > 1).length),
      heading: (await page.locator('#chart-heading').innerText()).trim(),
      legend: (await page.locator('#chart-legend').innerText()).replace(/\s+/g, ' ').trim(),
      axis: await page.locator('#chart text').evaluateAll((ts) => ts.map((t) => t.textContent)),
    };
    out.rows = await page.locator('#recent tr.mail').count();
    out.totals = (await page.locator('#totals').innerText()).replace(/\s+/g, ' ').trim();
    await page.screenshot({ path: shot, fullPage: true });
    await page.fill('input[name=q]', term);
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'networkidle', timeout: 20000 }),
      page.click('form[role=search] button[type=submit]'),
    ]);
    out.search = {
      url: page.url(),
      rows: await page.locator('#recent tr.mail').count(),
      text: (await page.locator('#recent').innerText()).replace(/\s+/g, ' ').trim(),
    };
    await page.screenshot({ path: shot.replace(/\.png$/, '-search.png'), fullPage: true });
  } catch (e) {
    out.error = String(e && e.message ? e.message : e).split('\n')[0];
  } finally {
    await browser.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`dashboard.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});

#!/usr/bin/env node
// mailveil's browser witness: opens HTML files in headless Chromium the way a mail client
// that shows remote images would (JavaScript off, images on) and lists every network
// request the page makes. Nothing leaves the machine:
//
//   1. every request Playwright can intercept (context.route '**/*', all frames) is
//      recorded and answered here: a 1x1 GIF, an empty stylesheet, an empty document, or
//      an abort. Navigating the mail itself away (meta refresh) is answered 204, so the
//      page stays and the later passes still see it.
//   2. Chromium is told to use a proxy on loopback that this script runs (a sink): what
//      slips past interception (link rel=prefetch did, from an about:blank document)
//      reaches the sink, is recorded and answered 502. Loopback itself is not
//      proxied, so --pass origins (a local image proxy under test) are reached directly.
//   3. Host resolution is mapped to "not found" for every name except loopback, so not
//      even a DNS query leaves (dns-prefetch, Chromium's own background services).
//      (Checked with strace: the only non-loopback connect() is Chromium's IPv6 probe,
//      a UDP socket connected to a public resolver address, which sends no packet.)
//
// Each file is opened from a file:// copy (with a UTF-8 byte order mark, which outranks any
// <meta charset>), as a local document the way a mail client shows one: relative URLs
// stay local. (page.setContent is not used: Chromium 156 crashes now and then on a
// document written that way that holds both a data: and a srcdoc iframe.)
//
// Every file is rendered in its own browser context (no shared cache) in four passes,
// each until the network has been quiet for --settle ms: screen 1280x1024, print media
// (CSS beacons in @media print), dark colour scheme, and a 375 px wide phone screen
// (@media max-width rules). Chromium loads lazy images and frames eagerly when scripts are
// off, so nothing waits for scrolling.
//
// With --visible, the images a reader sees are listed too, at the desktop (1280 px) and
// at the phone (375 px) width: every <img>, <input type=image>, SVG <image> and CSS
// background whose element is rendered (checkVisibility with opacity and visibility),
// at least 1x1 and more than 3 px on one side, not clipped away by an ancestor and not
// off the page. Every image request is answered with a 1x1 GIF, so an image is visible
// only where the markup or CSS gives it a size, as an open pixel would never have one.
//
// Output: one JSON line per file on stdout:
//   {"file": F, "requests": [{"url", "type", "phase", "via", "passed"?}], "error"?: "...",
//    "visible"?: {"desktop": [URL...], "phone": [URL...]}}
// type is Playwright's resource type ("image", "stylesheet", "font", "media", "document",
// "other", ...), or "connect" for a CONNECT seen only by the sink. via lists who saw it:
// "route" (intercepted), "event" (the request event), "sink" (the loopback proxy).
// Requests to --pass origins go through for real and carry "passed": true.
//
// usage: node render.js [--pass ORIGIN]... [--settle MS] [--screen-only] [--visible] FILE.html...
// env:   CHROMIUM (default /usr/bin/chromium)
'use strict';

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { pathToFileURL } = require('url');
const { chromium } = require('playwright-core');

// A transparent 1x1 GIF: what every intercepted image request gets.
const GIF = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

// URL schemes that never touch the network.
const LOCAL_SCHEMES = ['data:', 'about:', 'blob:', 'file:', 'chrome-error:', 'chrome:', 'cid:', 'mid:'];

// Chromium's own background services still call home at start, whatever the flags; the
// sink answers them like anything else, but they belong to no mail and are not listed
// unless a page event also saw the same URL.
const BROWSER_OWN = /(^|\.)(google\.com|googleapis\.com|gstatic\.com|gvt1\.com|chromium\.org)$/i;

const PHASE_TIMEOUT_MS = 10000;
const LOAD_TIMEOUT_MS = 20000;

function usage(msg) {
  if (msg) process.stderr.write(`render.js: ${msg}\n`);
  process.stderr.write('usage: node render.js [--pass ORIGIN]... [--settle MS] [--screen-only] [--visible] FILE.html...\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { pass: [], settle: 400, screenOnly: false, visible: false, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--pass') {
      if (i + 1 >= argv.length) usage('--pass needs an origin');
      opts.pass.push(argv[++i].replace(/\/+$/, ''));
    } else if (a === '--settle') {
      opts.settle = Number(argv[++i]);
      if (!Number.isFinite(opts.settle) || opts.settle < 0) usage('--settle needs milliseconds');
    } else if (a === '--screen-only') {
      opts.screenOnly = true;
    } else if (a === '--visible') {
      opts.visible = true;
    } else if (a === '-h' || a === '--help') {
      usage();
    } else if (a.startsWith('--')) {
      usage(`unknown option ${a}`);
    } else {
      opts.files.push(a);
    }
  }
  if (opts.files.length === 0) usage('no files');
  return opts;
}

function isLocalScheme(url) {
  return LOCAL_SCHEMES.some((s) => url.startsWith(s));
}

function isPassed(url, pass) {
  return pass.some((origin) => url === origin || url.startsWith(origin + '/'));
}

function hostOf(url) {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}

// The loopback proxy that catches whatever escapes interception. It reads the request
// line, records it, and answers 502 (a CONNECT gets 502 too, so no tunnel opens).
function startSink(onHit) {
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('error', () => {});
    sock.setTimeout(5000, () => sock.destroy());
    sock.on('data', (chunk) => {
      if (buf === null) return;
      buf += chunk.toString('latin1');
      const eol = buf.indexOf('\r\n');
      if (eol < 0 && buf.length < 8192) return;
      const line = (eol < 0 ? buf : buf.slice(0, eol)).split(' ');
      buf = null;
      const [method, target] = line;
      if (method === 'CONNECT') onHit({ url: `https://${target}/`, type: 'connect' });
      else if (target) onHit({ url: target, type: 'other' });
      sock.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// Runs in the page (page.evaluate works with the page's own scripts off): the http(s)
// URLs of the images a reader sees at the current width.
function visibleImages() {
  const out = new Set();
  const doc = document.documentElement;
  const docW = Math.max(doc.scrollWidth, window.innerWidth);
  const docH = Math.max(doc.scrollHeight, window.innerHeight);
  const seen = (el) => {
    if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return false;
    const r = el.getBoundingClientRect();
    if (!(r.width >= 1 && r.height >= 1 && (r.width > 3 || r.height > 3))) return false;
    const left = r.left + window.scrollX;
    const top = r.top + window.scrollY;
    if (left + r.width <= 0 || top + r.height <= 0 || left >= docW || top >= docH) return false;
    for (let a = el.parentElement; a; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
      const ar = a.getBoundingClientRect();
      if (ar.width < 1 || ar.height < 1) return false;
      if (r.right <= ar.left || r.left >= ar.right || r.bottom <= ar.top || r.top >= ar.bottom) return false;
    }
    return true;
  };
  const web = (u) => typeof u === 'string' && /^https?:/i.test(u);
  for (const img of document.querySelectorAll('img, input[type=image]')) {
    const src = img.currentSrc || img.src;
    if (web(src) && seen(img)) out.add(src);
  }
  for (const img of document.querySelectorAll('image, feImage')) {
    const href = img.href && img.href.baseVal;
    if (!href) continue;
    let abs;
    try { abs = new URL(href, document.baseURI).href; } catch { continue; }
    if (web(abs) && seen(img)) out.add(abs);
  }
  for (const el of document.querySelectorAll('*')) {
    const bg = getComputedStyle(el).backgroundImage;
    if (!bg || bg === 'none') continue;
    const urls = Array.from(bg.matchAll(/url\("((?:[^"\\]|\\.)*)"\)/g), (m) => m[1]).filter(web);
    if (urls.length && seen(el)) urls.forEach((u) => out.add(u));
  }
  return Array.from(out);
}

// What an intercepted request is answered with. Never a real fetch.
function answer(route, req, page) {
  const type = req.resourceType();
  if (type === 'document') {
    // Navigating the mail itself (meta refresh, a form) must not replace it: 204 keeps
    // the page as it is. Frames get an empty document.
    if (page && req.frame() === page.mainFrame() && req.isNavigationRequest()) {
      return route.fulfill({ status: 204, body: '' });
    }
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title></title>' });
  }
  if (type === 'image') return route.fulfill({ status: 200, contentType: 'image/gif', body: GIF });
  if (type === 'stylesheet') return route.fulfill({ status: 200, contentType: 'text/css', body: '' });
  return route.abort('blockedbyclient');
}

// Records the requests of one file; keeps track of activity for the idle wait.
class Recorder {
  constructor(pass) {
    this.pass = pass;
    this.byKey = new Map();
    this.list = [];
    this.phase = 'load';
    this.pending = 0;
    this.last = Date.now();
  }

  touch() {
    this.last = Date.now();
  }

  add(url, type, via) {
    this.touch();
    if (isLocalScheme(url)) return;
    const key = `${url}\u0000${type}`;
    let rec = this.byKey.get(key);
    if (!rec) {
      // A sink hit for a URL a page event already listed is the same request.
      if (via === 'sink') {
        rec = this.list.find((r) => r.url === url);
      }
      if (!rec) {
        rec = { url, type, phase: this.phase, via: [] };
        if (isPassed(url, this.pass)) rec.passed = true;
        this.byKey.set(key, rec);
        this.list.push(rec);
      }
    }
    if (!rec.via.includes(via)) rec.via.push(via);
  }

  // Resolves once nothing has happened for `settle` ms and no request is open.
  async idle(settle) {
    const deadline = Date.now() + PHASE_TIMEOUT_MS;
    this.touch();
    for (;;) {
      const quiet = Date.now() - this.last;
      if ((quiet >= settle && this.pending <= 0) || Date.now() > deadline) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function renderOne(browser, file, opts, sinkTarget, copy) {
  const rec = new Recorder(opts.pass);
  sinkTarget.current = rec;
  const visible = { desktop: [], phone: [] };
  const context = await browser.newContext({
    javaScriptEnabled: false,
    viewport: { width: 1280, height: 1024 },
    serviceWorkers: 'block',
    colorScheme: 'light',
    reducedMotion: 'no-preference',
  });
  let error;
  try {
    const page = await context.newPage();
    context.on('request', (req) => {
      rec.pending++;
      rec.add(req.url(), req.resourceType(), 'event');
    });
    const done = () => {
      rec.pending--;
      rec.touch();
    };
    context.on('requestfinished', done);
    context.on('requestfailed', done);
    await context.route('**/*', (route) => {
      const req = route.request();
      const url = req.url();
      if (isLocalScheme(url)) return route.continue();
      rec.add(url, req.resourceType(), 'route');
      if (isPassed(url, opts.pass)) return route.continue();
      try {
        return answer(route, req, page).catch(() => {});
      } catch {
        // req.frame() throws for requests without a frame (workers): refuse them.
        return route.abort('blockedbyclient').catch(() => {});
      }
    });
    const html = fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
    fs.writeFileSync(copy, '\uFEFF' + html, 'utf8');
    rec.phase = 'screen';
    await page.goto(pathToFileURL(copy).href, { waitUntil: 'load', timeout: LOAD_TIMEOUT_MS });
    await rec.idle(opts.settle);
    if (opts.visible) visible.desktop = await page.evaluate(visibleImages);
    if (!opts.screenOnly) {
      rec.phase = 'print';
      await page.emulateMedia({ media: 'print' });
      await rec.idle(opts.settle);
      rec.phase = 'dark';
      await page.emulateMedia({ media: 'screen', colorScheme: 'dark' });
      await rec.idle(opts.settle);
    }
    if (!opts.screenOnly || opts.visible) {
      rec.phase = 'phone';
      await page.setViewportSize({ width: 375, height: 812 });
      await rec.idle(opts.settle);
      if (opts.visible) visible.phone = await page.evaluate(visibleImages);
    }
  } catch (e) {
    error = String(e && e.message ? e.message : e).split('\n')[0];
  } finally {
    await context.close().catch(() => {});
    // Late sink hits (sockets closing) still belong to this file.
    await new Promise((r) => setTimeout(r, 50));
    sinkTarget.current = null;
  }
  const out = {
    file,
    requests: rec.list.map((r) => ({ ...r, via: r.via.join(',') })),
  };
  if (error) out.error = error;
  if (opts.visible) out.visible = visible;
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const sinkTarget = { current: null };
  const sink = await startSink((hit) => {
    const rec = sinkTarget.current;
    if (!rec) return;
    const host = hostOf(hit.url);
    const seen = rec.list.some((r) => r.url === hit.url);
    if (!seen && BROWSER_OWN.test(host)) return;
    rec.add(hit.url, hit.type, 'sink');
  });
  // chromium.launch gives every run a fresh, empty user-data-dir of its own (and removes
  // it afterwards); Playwright refuses --user-data-dir in args for that reason.
  const launch = () => chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-domain-reliability',
      '--disable-breakpad',
      '--no-pings',
      `--proxy-server=http://127.0.0.1:${sink.address().port}`,
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]',
    ],
  });
  let chrome = await launch();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mailveil-render-'));
  let failed = 0;
  try {
    for (const [n, file] of opts.files.entries()) {
      const copy = path.join(tmp, `mail-${n}.html`);
      let out = await renderOne(chrome, file, opts, sinkTarget, copy);
      if (!chrome.isConnected()) {
        // The browser died under this file: start a new one and give the file a second go.
        process.stderr.write(`render.js: Chromium exited while rendering ${file}; restarting\n`);
        chrome = await launch();
        out = await renderOne(chrome, file, opts, sinkTarget, copy);
        if (!chrome.isConnected()) chrome = await launch();
      }
      if (out.error) failed++;
      process.stdout.write(JSON.stringify(out) + '\n');
    }
  } finally {
    await chrome.close().catch(() => {});
    sink.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  process.stderr.write(`render.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});

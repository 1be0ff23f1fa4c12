// Debian's Chromium driven by playwright-core; never a downloaded browser.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const BASE_FLAGS = [
  '--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic',
];

/** `webgpu`: a software WebGPU adapter (SwiftShader); `cpu`: no WebGPU at all.
 *  `serviceWorkers: 'block'`: the page cannot install its service worker. */
export async function launch(mode, { serviceWorkers = 'allow' } = {}) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'polytask-chromium-'));
  const args = [...BASE_FLAGS];
  if (mode === 'webgpu') args.push('--enable-unsafe-webgpu');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    serviceWorkers,
    args,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  // The model runs in a worker: its errors count too.
  page.on('worker', (w) => w.on('console', (m) => { if (m.type() === 'error') errors.push(`worker: ${m.text()}`); }));
  return {
    page,
    errors,
    close: async () => { await context.close(); fs.rmSync(userDataDir, { recursive: true, force: true }); },
  };
}

export const ARTIFACTS = process.env.POLYTASK_ARTIFACTS ?? path.resolve('target/browser-artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

// Browser end-to-end tests of the static site, on WebGPU (software adapter) and on the
// CPU backend (no WebGPU). Run: node --test tests/browser/ (after `bash scripts/build-web.sh`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { serve } from './serve.mjs';
import { launch, ARTIFACTS } from './browser.mjs';

const DIST = path.resolve('www/dist');
const MODEL_DIR = process.env.POLYTASK_MODEL_DIR;

// The same sentences as tests/encoder.rs: punctuation, accents, other scripts, unknown words.
const SENTENCES = [
  'The new movie is awesome',
  'Hello, world!',
  'Zyxwvut qlorbnax frumious bandersnatch.',
  "Don't   panic:  it's only 42 € (or is it $43.50?)",
  'Ünïcödé àccents and a naïve café résumé',
  '東京 is the capital of Japan 🇯🇵 and ölçü is Turkish',
  'a',
  "I'd like to book a flight from Boston to San Francisco on the 3rd of March, please.",
];

let site;
before(async () => {
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), 'run `bash scripts/build-web.sh` first');
  site = await serve(DIST);
});
after(() => site?.close());

// `?backend=` as a person would choose: nothing (the page picks), or WebGPU by hand.
const STARTS = [
  // A software WebGPU adapter is slower than the CPU backend: the page says so, runs on the
  // CPU, and offers WebGPU.
  { mode: 'webgpu', query: '', backend: 'cpu', says: /the WebGPU adapter is a software one \(.*swiftshader.*\)/ },
  { mode: 'webgpu', query: '?backend=webgpu', backend: 'webgpu', says: /WebGPU \(burn wgpu\) on a software adapter/ },
  // Without WebGPU: the CPU on threads (the site's service worker makes the page
  // cross-origin isolated), or on one thread when asked, or when shared memory cannot be
  // had (service workers blocked, as a browser or a policy may).
  { mode: 'cpu', query: '', backend: 'cpu', says: /\(burn flex, \d+ threads, SIMD\); this browser gives no WebGPU adapter$/ },
  { mode: 'cpu', query: '?threads=0', backend: 'cpu', says: /\(burn flex, 1 thread, SIMD\); this browser gives no WebGPU adapter; one thread: asked for by \?threads=0/ },
  { mode: 'cpu', query: '', noServiceWorker: true, backend: 'cpu', says: /1 thread, SIMD\).*; one thread: the page is not cross-origin isolated, and its service worker did not install/ },
];
for (const { mode, query, noServiceWorker, backend: want, says } of STARTS) {
  const what = `${query || 'no choice'}${noServiceWorker ? ', service workers blocked' : ''}`;
  test(`page starts from a sub-path: ${mode} browser, ${what} -> ${want}`, async () => {
    const b = await launch(mode, { serviceWorkers: noServiceWorker ? 'block' : 'allow' });
    try {
      await b.page.goto(site.url + query);
      await b.page.waitForFunction(
        () => !['starting…', ''].includes(document.querySelector('#status')?.textContent ?? ''),
        null, { timeout: 120_000 });
      const status = await b.page.textContent('#status');
      const backend = await b.page.getAttribute('#backend', 'data-backend');
      await b.page.screenshot({ path: path.join(ARTIFACTS, `start-${mode}-${want}${query}${noServiceWorker ? '-nosw' : ''}.png`) });
      // Past the device check: the page goes on to load the model bundle.
      assert.ok(['loading the model…', 'ready', 'bundle failed'].includes(status),
        `status: ${status}; errors: ${b.errors.join('\n')}`);
      assert.equal(backend, want);
      assert.match(await b.page.textContent('#backend'), says);
    } finally {
      await b.close();
    }
  });
}

test('tokenization in wasm equals the reference tokenizer', { skip: !MODEL_DIR && 'POLYTASK_MODEL_DIR not set' }, async () => {
  const tokenizerJson = fs.readFileSync(path.join(MODEL_DIR, 'tokenizer.json'), 'utf8');
  // Reference: Python's `tokenizers` on the same tokenizer.json.
  const py = `
import json, sys
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1]); t.no_padding(); t.enable_truncation(256)
print(json.dumps([t.encode(s).ids for s in json.load(sys.stdin)]))`;
  const expected = JSON.parse(execFileSync(process.env.PYTHON ?? 'python3',
    ['-c', py, path.join(MODEL_DIR, 'tokenizer.json')], { input: JSON.stringify(SENTENCES) }));
  const b = await launch('cpu');
  try {
    await b.page.goto(site.url);
    await b.page.waitForFunction(() => window.wasmBindings?.tokenize, null, { timeout: 60_000 });
    const got = JSON.parse(await b.page.evaluate(
      ([tok, texts]) => window.wasmBindings.tokenize(tok, texts, 256),
      [tokenizerJson, JSON.stringify(SENTENCES)]));
    assert.equal(got.length, SENTENCES.length);
    got.forEach((g, i) => assert.deepEqual(g.ids, expected[i], `sentence ${JSON.stringify(SENTENCES[i])}`));
    // Word ids align sub-words to words: [CLS] and [SEP] have none.
    assert.equal(got[0].word_ids[0], null);
    assert.equal(got[0].word_ids.at(-1), null);
  } finally {
    await b.close();
  }
});

// The app end to end with the real all-MiniLM-L6-v2, briefly trained on SNIPS intents and
// slots (tests/browser/fixtures/snips-small.toml) and exported as an f16 bundle with its two
// heads and one natively adapted task: the page loads and checks the bundle, predicts what
// `core-train predict --bundle` predicts (labels, confidences, entities highlighted in the
// text), teaches a new 5-label task from 5 real examples each in the page (held-out
// accuracy well above chance; on threads also with the contrastive choice), finds it again
// after a reload (kept in localStorage), saves it and loads it back with identical
// predictions, and shows clear messages for bad input and a damaged bundle.
// On every path: WebGPU (software adapter, asked for with ?backend=webgpu: the model's
// worker runs the single-threaded flavour of the wasm), the CPU on threads (no WebGPU; the
// page made cross-origin isolated by its service worker runs the threaded flavour) and
// the CPU on one thread (?threads=0); and a WebGPU device lost mid-run.
// Needs POLYTASK_MODEL_DIR and a built core-train (cargo build) and site (bash scripts/build-web.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serve } from './serve.mjs';
import { launch, ARTIFACTS } from './browser.mjs';

const DIST = path.resolve('www/dist');
const MODEL_DIR = process.env.POLYTASK_MODEL_DIR;
const SKIP = !MODEL_DIR && 'POLYTASK_MODEL_DIR not set';
const SENTENCES = ['hey, good to see you again', 'thanks so much, that was helpful', 'see you tomorrow, bye',
  'play the latest album by taylor swift on spotify', 'book a table for two at an italian restaurant in boston'];

function coreTrain(args) {
  return execFileSync('cargo', ['run', '--quiet', '--bin', 'core-train', '--', ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

let site;
let native;
before(async () => {
  if (SKIP) return;
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), 'run `bash scripts/build-web.sh` first');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'polytask-bundle-'));
  // POLYTASK_TEACH_MODEL: bundle this trained model instead (with intent and slots tasks),
  // e.g. to time a distilled student against its teacher in the page.
  let model = process.env.POLYTASK_TEACH_MODEL && path.resolve(process.env.POLYTASK_TEACH_MODEL);
  if (!model) {
    const run = path.join(tmp, 'snips-small');
    coreTrain(['train', 'tests/browser/fixtures/snips-small.toml', '--backend', 'cpu', '--out', run]);
    model = path.join(run, 'best');
  }
  const task = path.join(tmp, 'greetings.safetensors');
  coreTrain(['adapt', '--support', 'tests/browser/fixtures/greetings.jsonl', '--model', model,
    '--mode', 'head', '--steps', '10', '--head-lr', '1e-2', '--backend', 'cpu', '--out', task]);
  const bundle = path.join(DIST, 'bundle');
  coreTrain(['export', '--model', model, '--task', task, '--dtype', 'f16', '--out', bundle]);
  // A copy with one damaged file, for the checksum message.
  const bad = path.join(DIST, 'bundle-bad');
  fs.rmSync(bad, { recursive: true, force: true });
  fs.cpSync(bundle, bad, { recursive: true });
  const tok = path.join(bad, 'tokenizer.json');
  fs.writeFileSync(tok, fs.readFileSync(tok, 'utf8').replace('[UNK]', '[UNX]'));
  native = coreTrain(['predict', '--bundle', bundle, '--backend', 'cpu', ...SENTENCES])
    .trim().split('\n').map((l) => JSON.parse(l));
  // The slot head must find entities, or the highlighting below would check nothing.
  const found = native.flatMap((n) => n.tasks.slots.entities.map((e) => e.text));
  assert.ok(found.includes('taylor swift'), `native entities: ${JSON.stringify(found)}`);
  site = await serve(DIST);
});
after(() => site?.close());

async function ready(page) {
  await page.waitForFunction(
    () => ['ready', 'bundle failed'].includes(document.querySelector('#status')?.textContent ?? '')
      || document.querySelector('#status')?.textContent?.startsWith('device check failed'),
    null, { timeout: 300_000 });
  return page.textContent('#status');
}

// The threads the page's CPU backend should start here (web/src/text.rs, `pool_size`).
async function poolSize(page) {
  const cpus = await page.evaluate(() => navigator.hardwareConcurrency || 0);
  return cpus === 0 ? 2 : Math.min(cpus, 8);
}

async function predictions(page, text, button = '#try-btn', input = '#try-text') {
  await page.fill(input, text);
  await page.click(button);
  await page.waitForFunction((t) => document.querySelector('#try-out')?.dataset.text === t
    || document.querySelector('#panic')?.textContent, text);
  const panic = await page.textContent('#panic');
  if (panic) return { panic };
  return page.$$eval('#try-out .prediction', (els) => els.map((e) => ({
    task: e.dataset.task,
    label: e.dataset.label,
    probs: e.dataset.probs && JSON.parse(e.dataset.probs),
    entities: e.dataset.entities && JSON.parse(e.dataset.entities),
    // The highlighted spans as shown: each mark's text without its type tag.
    marks: [...e.querySelectorAll('mark.entity')].map((m) => ({
      type: m.dataset.type,
      text: m.textContent.slice(0, m.textContent.length - m.querySelector('small').textContent.length),
    })),
  })));
}

// `cpu`: as a visitor without WebGPU gets the page (threads); `cpu-1`: one thread.
const PATHS = {
  webgpu: { browser: 'webgpu', query: '?backend=webgpu', backend: 'webgpu', threads: '1' },
  cpu: { browser: 'cpu', query: '', backend: 'cpu', threads: 'pool' },
  'cpu-1': { browser: 'cpu', query: '?threads=0', backend: 'cpu', threads: '1' },
};

for (const [name, path_] of Object.entries(PATHS)) {
  const mode = path_.browser;
  test(`teach a task in the page on ${name}`, { skip: SKIP, timeout: 2_400_000 }, async () => {
    const b = await launch(mode);
    // Software WebGPU (SwiftShader) compiles every kernel on first use: slow, not stuck.
    b.page.setDefaultTimeout(mode === 'webgpu' ? 1_200_000 : 120_000);
    const timings = {};
    try {
      let t0 = Date.now();
      // The page would pick the CPU over a software adapter; the test asks for WebGPU.
      await b.page.goto(site.url + path_.query);
      assert.equal(await ready(b.page), 'ready', `errors: ${b.errors.join('\n')}; ${await b.page.textContent('#error')}`);
      assert.equal(await b.page.getAttribute('#backend', 'data-backend'), path_.backend);
      const threads = await b.page.getAttribute('#backend', 'data-threads');
      assert.equal(threads, path_.threads === 'pool' ? String(await poolSize(b.page)) : path_.threads,
        await b.page.textContent('#backend'));
      if (name === 'cpu-1') assert.match(await b.page.textContent('#backend'), /1 thread, SIMD.*one thread: asked for by \?threads=0/);
      timings.threads = Number(threads);
      // The page read every file of the bundle while its wasm compiled and handed them to
      // the model's worker, which did not load them again.
      const note = await b.page.textContent('#load-note');
      const [, files, handed] = note.match(/of (\d+) files from the cache, (\d+) read while the page started/) ?? [];
      assert.ok(files && handed === files, note);

      // Native and browser predictions of the bundled tasks agree.
      for (const [i, s] of SENTENCES.entries()) {
        const got = await predictions(b.page, s);
        assert.ok(!got.panic, got.panic);
        if (i === 0) timings.first_prediction_s = (Date.now() - t0) / 1000;
        assert.deepEqual(got.map((x) => x.task).sort(), Object.keys(native[i].tasks).sort(), s);
        const close = (a, b, what) => assert.ok(Math.abs(a - b) < 1e-3, `${s}: ${what} ${a} vs ${b}`);
        // The adapted task: every label's probability.
        const p = got.find((x) => x.task === 'greetings');
        const n = native[i].tasks.greetings;
        assert.equal(p.label, n.label, s);
        for (const [label, v] of Object.entries(n.probabilities)) close(p.probs[label], v, label);
        // The multi-task intent head: label and confidence.
        const intent = got.find((x) => x.task === 'intent');
        assert.equal(intent.label, native[i].tasks.intent.label, s);
        close(intent.probs[intent.label], native[i].tasks.intent.confidence, 'intent');
        // The slot head: the same entities (type, character span, confidence), highlighted.
        const slots = got.find((x) => x.task === 'slots');
        const want = native[i].tasks.slots.entities;
        assert.deepEqual(slots.entities.map(({ type, start, end, text }) => ({ type, start, end, text })),
          want.map(({ type, start, end, text }) => ({ type, start, end, text })), s);
        slots.entities.forEach((e, k) => close(e.confidence, want[k].confidence, e.text));
        assert.deepEqual(slots.marks, want.map(({ type, text }) => ({ type, text })), s);
      }

      // Bad input: one label only; an empty text.
      await b.page.fill('#examples', 'weather: will it rain\nweather: is it sunny');
      await b.page.click('#adapt');
      assert.match(await b.page.textContent('#teach-msg'), /at least 2 labels, found 1 \(weather\)/);
      await b.page.fill('#examples', 'weather: will it rain\nalarm:   \n');
      await b.page.click('#adapt');
      assert.match(await b.page.textContent('#teach-msg'), /line 2: the text is empty/);
      await b.page.fill('#labels', 'weather, alarm, music');
      await b.page.fill('#examples', 'weather: will it rain\nalarm: wake me up');
      await b.page.click('#adapt');
      assert.match(await b.page.textContent('#teach-msg'), /Label "music" has no example/);
      await b.page.fill('#labels', '');

      // Teach the bundled 5-way 5-shot example task with adapters.
      await b.page.click('button.example[data-task="travel"]');
      // Adapters backpropagate through the top blocks: a software WebGPU adapter compiles
      // all their kernels on the CPU (about 10 minutes here), so on WebGPU the test adapts
      // the head (about 2 minutes); adapters are taught on the CPU backend.
      const adaptMode = mode === 'webgpu' ? 'head' : 'adapters';
      await b.page.fill('#steps', '10');
      if (mode === 'cpu') {
        // The head alone first (timed; the adapters' task then takes its place).
        await b.page.selectOption('#mode', 'head');
        t0 = Date.now();
        await b.page.click('#adapt');
        await b.page.waitForFunction(() => document.querySelector('#adapt-time').textContent !== ''
          || document.querySelector('#teach-msg').textContent !== '');
        timings.adapt_5way_5shot_head_s = (Date.now() - t0) / 1000;
        timings.adapt_head_reported = await b.page.textContent('#adapt-time');
        assert.equal(await b.page.textContent('#teach-msg'), '', `errors: ${b.errors.join('\n')}`);
      }
      await b.page.selectOption('#mode', adaptMode);
      // The model works in a worker: the page's thread must never be blocked for more than
      // 50 ms while it adapts. Long tasks are watched from before the click to the end; a
      // deliberate 120 ms task in the middle proves that the watch sees what it should.
      await b.page.evaluate(() => {
        window.longTasks = [];
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) window.longTasks.push({ start: e.startTime, duration: e.duration });
        }).observe({ type: 'longtask' });
      });
      const watchFrom = await b.page.evaluate(() => performance.now());
      t0 = Date.now();
      await b.page.click('#adapt');
      await b.page.waitForFunction(() => document.querySelector('#adapt-progress').value >= 2
        || document.querySelector('#teach-msg').textContent !== '', null, { timeout: 1_200_000 });
      const blocked = await b.page.evaluate(() => new Promise((resolve) => setTimeout(() => {
        const start = performance.now();
        while (performance.now() - start < 120);
        resolve({ start, end: performance.now(), step: document.querySelector('#adapt-progress').value });
      }, 0)));
      await b.page.waitForFunction(() => document.querySelector('#adapt-time').textContent !== ''
        || document.querySelector('#teach-msg').textContent !== '', null, { timeout: 1_200_000 });
      timings[`adapt_5way_5shot_${adaptMode}_s`] = (Date.now() - t0) / 1000;
      // Long-task entries arrive after their task: give the observer a moment.
      await b.page.waitForTimeout(200);
      const longTasks = await b.page.evaluate((from) => window.longTasks.filter((t) => t.start + t.duration >= from), watchFrom);
      const deliberate = longTasks.filter((t) => t.start <= blocked.end && t.start + t.duration >= blocked.start);
      assert.ok(blocked.step < 10, `the deliberate task ran after the adaptation (step ${blocked.step})`);
      assert.equal(deliberate.length, 1, `the observer missed the deliberate 120 ms task: ${JSON.stringify(longTasks)}`);
      assert.ok(deliberate[0].duration >= 100, JSON.stringify(deliberate));
      const others = longTasks.filter((t) => t !== deliberate[0]);
      assert.deepEqual(others.filter((t) => t.duration > 50), [], 'main-thread tasks over 50 ms while adapting');
      timings.longest_other_main_thread_task_ms = Math.max(0, ...others.map((t) => t.duration));
      timings.adapt_reported = await b.page.textContent('#adapt-time');
      assert.equal(await b.page.textContent('#teach-msg'), '', `errors: ${b.errors.join('\n')}`);
      const held = await b.page.textContent('#heldout-result');
      const acc = Number(held.match(/accuracy: ([0-9.]+)/)[1]);
      assert.ok(acc >= 0.7, `held-out accuracy ${acc} (chance 0.2)`);
      const points = (await b.page.getAttribute('#loss-curve polyline', 'points')).split(' ');
      assert.equal(points.length, 10, 'one loss point per step');
      await b.page.screenshot({ path: path.join(ARTIFACTS, `adapted-${name}.png`), fullPage: true });

      // The taught task classifies new text; saved and loaded again, it predicts the same.
      const before = (await predictions(b.page, 'book a flight to berlin for next monday', '#classify', '#classify-text'))
        .find((x) => x.task === 'travel');
      assert.equal(before.label, 'flight');

      if (mode === 'cpu') {
        // Cancel stops an adaptation within one step, and adds no task.
        await b.page.fill('#task-name', 'never-finished');
        await b.page.fill('#steps', '200');
        await b.page.click('#adapt');
        await b.page.waitForFunction(() => document.querySelector('#adapt-progress').value >= 2);
        const atClick = Number(await b.page.getAttribute('#adapt-progress', 'value'));
        const c0 = Date.now();
        await b.page.click('#cancel');
        await b.page.waitForFunction(() => document.querySelector('#teach-msg').textContent.startsWith('Cancelled'));
        timings.cancel_s = (Date.now() - c0) / 1000;
        const stopped = Number((await b.page.textContent('#teach-msg')).match(/Cancelled after (\d+) of 200 steps/)[1]);
        // At most the step under way at the click and one whose progress was still on its
        // way to the page then.
        assert.ok(stopped >= atClick && stopped <= atClick + 2, `cancelled at step ${stopped}, clicked at ${atClick}`);
        assert.equal(await b.page.isEnabled('#adapt'), true);
        const tasks = (await predictions(b.page, 'book a flight to berlin')).map((x) => x.task);
        assert.ok(!tasks.includes('never-finished') && tasks.includes('travel'), JSON.stringify(tasks));
      }
      const [download] = await Promise.all([b.page.waitForEvent('download'), b.page.click('#save')]);
      const saved = path.join(os.tmpdir(), `polytask-task-${name}.safetensors`);
      await download.saveAs(saved);
      t0 = Date.now();
      await b.page.reload();
      assert.equal(await ready(b.page), 'ready');
      timings.reload_s = (Date.now() - t0) / 1000;
      assert.match(await b.page.textContent('#load-note'), /files from the cache/);
      // The page kept the task: it is back after the reload, predicting the same.
      assert.match(await b.page.textContent('#teach-msg'), /restored task "travel" \(5 labels\) from the last visit/);
      const restored = (await predictions(b.page, 'book a flight to berlin for next monday', '#classify', '#classify-text'))
        .find((x) => x.task === 'travel');
      assert.deepEqual(restored, before);
      await b.page.setInputFiles('#load-task', saved);
      await b.page.waitForFunction(() => document.querySelector('#teach-msg').textContent.startsWith('loaded task'));
      const after = (await predictions(b.page, 'book a flight to berlin for next monday', '#classify', '#classify-text'))
        .find((x) => x.task === 'travel');
      assert.deepEqual(after, before);
      // The task library holds one "travel" (each new one replaced the one before); renamed,
      // the model predicts under the new name; deleted, it is gone, also after a reload.
      const listed = () => b.page.$$eval('#task-list .task', (els) => els.map((e) => e.dataset.name));
      const tried = async (s) => (await predictions(b.page, s)).map((x) => x.task).sort();
      assert.deepEqual(await listed(), ['travel']);
      await b.page.fill('#task-list .task[data-name="travel"] .rename-to', 'trips');
      await b.page.click('#task-list .task[data-name="travel"] .rename');
      await b.page.waitForFunction(() => document.querySelector('#library-msg').textContent.startsWith('renamed'));
      assert.deepEqual(await listed(), ['trips']);
      assert.deepEqual(await tried('a flight to rome'), ['greetings', 'intent', 'slots', 'trips']);
      await b.page.click('#task-list .task[data-name="trips"] .delete');
      await b.page.waitForFunction(() => document.querySelector('#library-msg').textContent.startsWith('deleted'));
      assert.deepEqual(await listed(), []);
      assert.deepEqual(await tried('a train to rome'), ['greetings', 'intent', 'slots']);
      await b.page.reload();
      assert.equal(await ready(b.page), 'ready');
      assert.deepEqual(await listed(), []);
      assert.equal(await b.page.textContent('#teach-msg'), '');
      if (name === 'cpu') {
        // The contrastive choice: half of the steps on the supervised contrastive loss, then
        // adapters + head. It learns the task as well, every step on the loss curve.
        await b.page.click('button.example[data-task="travel"]');
        await b.page.fill('#task-name', 'travel-contrastive');
        await b.page.fill('#steps', '10');
        await b.page.selectOption('#mode', 'contrastive');
        t0 = Date.now();
        await b.page.click('#adapt');
        await b.page.waitForFunction(() => document.querySelector('#adapt-time').textContent !== ''
          || document.querySelector('#teach-msg').textContent !== '', null, { timeout: 1_200_000 });
        timings.adapt_5way_5shot_contrastive_s = (Date.now() - t0) / 1000;
        timings.adapt_contrastive_reported = await b.page.textContent('#adapt-time');
        assert.equal(await b.page.textContent('#teach-msg'), '', `errors: ${b.errors.join('\n')}`);
        const held = await b.page.textContent('#heldout-result');
        const acc = Number(held.match(/accuracy: ([0-9.]+)/)[1]);
        assert.ok(acc >= 0.7, `contrastive: held-out accuracy ${acc} (chance 0.2)`);
        assert.equal((await b.page.getAttribute('#loss-curve polyline', 'points')).split(' ').length, 10,
          'contrastive: one loss point per step, contrastive and cross-entropy');
        const got = (await predictions(b.page, 'book a flight to berlin for next monday', '#classify', '#classify-text'))
          .find((x) => x.task === 'travel-contrastive');
        assert.equal(got?.label, 'flight', JSON.stringify(got));
      }
      console.log(`# ${name} timings: ${JSON.stringify(timings)}`);
      assert.deepEqual(b.errors, []);
    } finally {
      await b.close();
    }
  });
}

test('the task library: the old page\'s task moves in; a full storage loses nothing', { skip: SKIP, timeout: 600_000 }, async () => {
  const b = await launch('cpu');
  try {
    await b.page.goto(site.url);
    assert.equal(await ready(b.page), 'ready');
    // What the page before the library kept: one task file, base64, in localStorage.
    const file = fs.readFileSync(path.join(DIST, 'bundle', 'tasks', 'greetings.safetensors')).toString('base64');
    await b.page.evaluate((f) => localStorage.setItem('polytask-task', f), file);
    await b.page.reload();
    assert.equal(await ready(b.page), 'ready');
    assert.match(await b.page.textContent('#teach-msg'), /restored task "greetings" \(\d+ labels\) from the last visit/);
    const listed = () => b.page.$$eval('#task-list .task', (els) => els.map((e) => e.dataset.name));
    assert.deepEqual(await listed(), ['greetings']);
    assert.equal(await b.page.evaluate(() => localStorage.getItem('polytask-task')), null);
    // A full storage: the task is taught and usable, the page says it was not kept, and
    // the library is as it was.
    await b.page.evaluate(() => {
      IDBObjectStore.prototype.put = function () { throw new DOMException('quota', 'QuotaExceededError'); };
    });
    await b.page.click('button.example[data-task="travel"]');
    await b.page.fill('#task-name', 'too-much');
    await b.page.fill('#steps', '2');
    await b.page.click('#adapt');
    await b.page.waitForFunction(() => document.querySelector('#teach-msg').textContent !== '');
    assert.match(await b.page.textContent('#teach-msg'),
      /Adapted, but not kept in the task library: this browser's storage for the page is full: download it to keep it\./);
    assert.deepEqual(await listed(), ['greetings']);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('a bundle that fails its checksum is reported in the page', { skip: SKIP, timeout: 300_000 }, async () => {
  const b = await launch('cpu');
  try {
    await b.page.goto(`${site.url}?bundle=bundle-bad`);
    assert.equal(await ready(b.page), 'bundle failed');
    assert.match(await b.page.textContent('#error'), /bundle-bad\/tokenizer\.json: checksum mismatch/);
  } finally {
    await b.close();
  }
});

test('a WebGPU device lost mid-run: the page says so and goes on on the CPU', { skip: SKIP, timeout: 1_200_000 }, async () => {
  const b = await launch('webgpu');
  b.page.setDefaultTimeout(600_000);
  try {
    await b.page.goto(`${site.url}?backend=webgpu`);
    assert.equal(await ready(b.page), 'ready');
    assert.equal(await b.page.getAttribute('#backend', 'data-backend'), 'webgpu');
    // Lost while a prediction is under way.
    await b.page.fill('#try-text', SENTENCES[0]);
    await b.page.click('#try-btn');
    // The worker owns the devices: the page asks it to destroy them.
    await b.page.evaluate(() => window.polytaskLoseDevice());
    await b.page.waitForFunction(() => document.querySelector('#backend')?.dataset.backend === 'cpu');
    assert.equal(await ready(b.page), 'ready');
    assert.match(await b.page.textContent('#backend'),
      /CPU in wasm .*WebGPU failed in this browser \(the device was lost: destroyed: .*\); "Try WebGPU" tries it again/);
    // The page works on, on the CPU, and predicts what the native binary predicts.
    const got = await predictions(b.page, SENTENCES[0]);
    assert.ok(!got.panic, got.panic);
    assert.equal(got.find((x) => x.task === 'intent').label, native[0].tasks.intent.label);
    assert.equal(await b.page.textContent('#panic'), '');
  } finally {
    await b.close();
  }
});

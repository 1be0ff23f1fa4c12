// The worker that owns the model (web/src/worker). scripts/build-web.sh copies this file to
// www/dist as MODULE.worker.js for each flavour of the wasm, naming the module where the
// placeholder stands. The page sends the compiled module first; once instantiated, the
// module's main sees the model's worker (marked here: the threaded flavour's other
// workers are its CPU threads) and answers the page's messages from then on.
import init from './MODULE.js';

self.polytaskModelWorker = true;
self.onmessage = async (e) => {
  self.onmessage = null;
  await init({ module_or_path: e.data });
};

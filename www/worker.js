// The worker that owns the model (web/src/worker). scripts/build-web.sh copies this file to
// www/dist as MODULE.worker.js, naming the module it built where the placeholder stands.
// The page sends the compiled module first; once instantiated, the module's main sees a
// worker and answers the page's messages from then on.
import init from './MODULE.js';

self.onmessage = async (e) => {
  self.onmessage = null;
  await init({ module_or_path: e.data });
};

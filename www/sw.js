// Polytask's service worker: it makes the site cross-origin isolated on any static host
// (one that cannot send headers), so that the browser gives the page shared memory and
// the model runs on several threads (www/index.html installs it). It adds the two
// headers that isolation needs to the page and to its workers' scripts; every other
// request (the wasm, the model bundle) goes to the network untouched.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.mode !== 'navigate' && request.destination !== 'worker') return;
  event.respondWith(
    fetch(request).then((response) => {
      // A redirect or an opaque answer is passed on as it is.
      if (response.status === 0 || response.type === 'opaqueredirect') return response;
      const headers = new Headers(response.headers);
      headers.set('Cross-Origin-Opener-Policy', 'same-origin');
      headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    }),
  );
});

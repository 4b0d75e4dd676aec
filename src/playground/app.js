// fal-proxy playground: drives the proxy's native routes from the browser.
//
//   upload:  POST /storage/upload/initiate?storage_type=fal-cdn-v3  -> PUT upload_url
//   submit:  POST /queue/{endpoint}
//   watch:   GET  {status_url}/stream?logs=1   (fallback: GET {status_url}?logs=1 every second)
//   result:  GET  {response_url}
//   cancel:  PUT  {cancel_url}
//
// No framework, no build step, no inline script or style (the page is served with a strict CSP).
'use strict';

(() => {
  const MAX_IMAGES = 14;
  const PROMPT_MIN = 3;
  const PROMPT_MAX = 50000;
  const MAX_CALLS_SHOWN = 40;
  const POLL_INTERVAL_MS = 1000;
  const POLL_MAX_FAILURES = 5;
  const MAX_UPLOAD_ATTEMPTS = 30;
  const STREAM_STALL_MS = 60000;
  const KEY_STORAGE = 'fal-proxy-playground.client-key';
  const ENDPOINTS = {
    edit: 'fal-ai/nano-banana-pro/edit',
    t2i: 'fal-ai/nano-banana-pro',
  };
  const UPLOAD_PATH = '/storage/upload/initiate?storage_type=fal-cdn-v3';
  const EXT_TYPES = {
    png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif',
    avif: 'image/avif', heic: 'image/heic', heif: 'image/heif', bmp: 'image/bmp', tif: 'image/tiff',
    tiff: 'image/tiff',
  };
  const TYPE_EXTS = {
    'image/png': 'png', 'image/jpeg': 'jpg', 'image/webp': 'webp', 'image/gif': 'gif',
    'image/avif': 'avif',
  };
  // Input field -> [wrapper id, control id] for highlighting validation errors.
  const FIELDS = {
    prompt: ['prompt-field', 'prompt'],
    num_images: ['num-images-field', 'num-images'],
    aspect_ratio: ['aspect-ratio-field', 'aspect-ratio'],
    resolution: ['resolution-field', 'resolution'],
    output_format: ['output-format-field', 'output-format'],
    image_urls: ['images-field', 'image-input'],
    seed: ['seed-field', 'seed'],
  };

  // ---------------------------------------------------------------- small helpers

  const byId = (id) => document.getElementById(id);

  /** Creates an element: h('p', {class: 'x', text: 'hi'}, child, ...). */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== 'string') node[key] = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function formatBytes(n) {
    if (!Number.isFinite(n)) return '';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function clockTime(date) {
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) return reject(abortError());
      const timer = setTimeout(done, ms);
      function done() {
        if (signal) signal.removeEventListener('abort', onAbort);
        resolve();
      }
      function onAbort() {
        clearTimeout(timer);
        reject(abortError());
      }
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  function abortError() {
    return new DOMException('Aborted', 'AbortError');
  }

  function isAbort(err) {
    return err && err.name === 'AbortError';
  }

  /** Resolves with `promise`, or rejects as soon as `signal` aborts. */
  function untilAborted(promise, signal) {
    if (!signal) return promise;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(abortError());
      const onAbort = () => reject(abortError());
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(
        (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
        (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
      );
    });
  }

  /** Marks a promise as handled (its failure is shown elsewhere) and returns it unchanged. */
  function quiet(promise) {
    promise.catch(() => {});
    return promise;
  }

  function codePoints(text) {
    let n = 0;
    for (const _ of text) n += 1; // eslint-disable-line no-unused-vars
    return n;
  }

  function guessType(file) {
    if (file.type) return file.type;
    const ext = (file.name.split('.').pop() || '').toLowerCase();
    return EXT_TYPES[ext] || 'application/octet-stream';
  }

  function isImageFile(file) {
    return guessType(file).startsWith('image/');
  }

  /** A URL shown relative to this page when it points at this origin. */
  function displayUrl(url) {
    try {
      const u = new URL(url, location.href);
      if (u.origin === location.origin) return u.pathname + u.search;
      return u.href;
    } catch (_) {
      return String(url);
    }
  }

  /** A copy of `value` with long data URIs shortened, for display. */
  function abbreviate(value) {
    return JSON.stringify(value, (_key, v) => {
      if (typeof v === 'string' && v.startsWith('data:') && v.length > 80) {
        const comma = v.indexOf(',');
        const head = v.slice(0, Math.min(comma + 1, 60));
        return `${head}${v.slice(comma + 1, comma + 13)}… (${formatBytes(v.length)})`;
      }
      return v;
    }, 2);
  }

  function truncate(text, max) {
    return text.length > max ? `${text.slice(0, max)}\n… (${text.length - max} more characters)` : text;
  }

  function parseRetryAfter(value) {
    if (!value) return null;
    const trimmed = value.trim();
    if (/^\d+$/.test(trimmed)) return new Date(Date.now() + Number(trimmed) * 1000);
    const date = new Date(trimmed);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function describeRetry(date) {
    const seconds = Math.max(0, Math.ceil((date.getTime() - Date.now()) / 1000));
    let wait;
    if (seconds <= 1) return 'You can try again now.';
    else if (seconds < 120) wait = `in ${seconds} seconds`;
    else if (seconds < 7200) wait = `in about ${Math.round(seconds / 60)} minutes`;
    else wait = `in about ${Math.round(seconds / 3600)} hours`;
    return `You can try again ${wait} (around ${clockTime(date)}).`;
  }

  // ---------------------------------------------------------------- element handles

  const ui = {
    form: byId('form'),
    modeEdit: byId('mode-edit'),
    modeT2i: byId('mode-t2i'),
    endpoint: byId('endpoint'),
    dropzone: byId('dropzone'),
    imageInput: byId('image-input'),
    imageCount: byId('image-count'),
    thumbs: byId('thumbs'),
    inlineNote: byId('inline-note'),
    t2iNote: byId('t2i-note'),
    prompt: byId('prompt'),
    promptCount: byId('prompt-count'),
    aspectRatio: byId('aspect-ratio'),
    resolution: byId('resolution'),
    outputFormat: byId('output-format'),
    numImages: byId('num-images'),
    seed: byId('seed'),
    clientKey: byId('client-key'),
    clientKeyToggle: byId('client-key-toggle'),
    usage: byId('usage'),
    errors: byId('errors'),
    submit: byId('submit'),
    cancel: byId('cancel'),
    status: byId('status'),
    progress: byId('progress'),
    elapsed: byId('elapsed'),
    facts: byId('facts'),
    requestId: byId('request-id'),
    queuePosition: byId('queue-position'),
    watchMode: byId('watch-mode'),
    logs: byId('logs'),
    logsEmpty: byId('logs-empty'),
    results: byId('results'),
    resultsEmpty: byId('results-empty'),
    description: byId('description'),
    calls: byId('calls'),
    callsEmpty: byId('calls-empty'),
  };

  const state = {
    images: [], // see addFiles()
    nextImageId: 1,
    run: null,
    runCounter: 0,
  };

  // ---------------------------------------------------------------- errors

  /** An error answer from the proxy (or a failure to reach it). */
  class ProxyError extends Error {
    constructor({ status = 0, body = null, headers = null, what = '', network = false }) {
      const message = (body && (body.message || (typeof body.detail === 'string' && body.detail)))
        || (network ? 'The proxy could not be reached.' : `HTTP ${status}`);
      super(message);
      this.name = 'ProxyError';
      this.status = status;
      this.body = body;
      this.code = (body && typeof body.code === 'string' && body.code) || '';
      this.what = what;
      this.network = network;
      this.retryAt = headers ? parseRetryAfter(headers.get('retry-after')) : null;
      this.proxyRequestId = headers ? headers.get('x-fal-proxy-request-id') : null;
    }
  }

  const EXPLAIN = {
    invalid_input: 'The proxy checks the input against the model\'s schema and its own policy before anything is sent to fal (so nothing was spent), and it refused this input. Fix the fields listed and try again.',
    unauthorized: 'This proxy needs a client key. Paste the key you were given into “Client key”; the page sends it as Authorization: Bearer <key>.',
    invalid_credentials: 'This proxy needs a client key, and the one in “Client key” was not accepted. Check it for typos or ask the proxy\'s operator for a valid one.',
    endpoint_not_allowed: 'This proxy only forwards the models on its allowlist, and this one is not on it.',
    origin_not_allowed: 'The proxy refuses browser requests from this page\'s origin. Its operator can add the origin to cors.allowed_origins.',
    webhook_not_allowed: 'The webhook URL is not on the proxy\'s list of allowed webhook URLs.',
    target_host_not_allowed: 'The proxy refused to forward this call to fal: the URL is not one it allows.',
    target_path_not_allowed: 'The proxy refused to forward this call to fal: the path is not one it allows.',
    payload_too_large: 'The request is bigger than the proxy accepts. Inline images (data URIs) are the usual cause: use fewer or smaller reference images.',
    rate_limited: 'You are sending requests faster than this proxy allows.',
    too_many_jobs: 'You already have as many jobs running as this proxy allows at once. Wait for one to finish, or cancel it.',
    budget_exceeded: 'This job would go over the spending budget, so the proxy refused it before anything was spent. Ask for fewer images or a lower resolution, or wait for the budget to reset.',
    upstream_unreachable: 'The proxy could not reach fal: fal may be down, or the server\'s network is having trouble. Try again in a moment.',
    overloaded: 'The proxy is handling as many requests as it allows right now. Try again shortly.',
    upstream_timeout: 'fal did not answer in time; it may be slow or overloaded. Try again.',
    body_timeout: 'The request arrived too slowly, so the proxy gave up on it. Check the connection and try again.',
    unsupported_media_type: 'The proxy expected a JSON request body.',
    method_not_allowed: 'That route does not take this method.',
    not_found: 'The proxy has no such route, or the request id is unknown (jobs are forgotten after a while).',
    internal_error: 'Something went wrong inside the proxy. Its log has the details under the proxy request id below.',
    invalid_json: 'The request body was not valid JSON.',
  };

  const TITLES = {
    invalid_input: 'The input was refused',
    unauthorized: 'A client key is needed',
    invalid_credentials: 'The client key was not accepted',
    endpoint_not_allowed: 'Model not allowed here',
    origin_not_allowed: 'This page\'s origin is not allowed',
    payload_too_large: 'Request too large',
    rate_limited: 'Rate limited',
    too_many_jobs: 'Too many jobs running',
    budget_exceeded: 'Over budget',
    upstream_unreachable: 'fal is unreachable',
    overloaded: 'Overloaded',
    upstream_timeout: 'fal is too slow',
    body_timeout: 'Request timed out',
    internal_error: 'Proxy error',
  };

  const EXPLAIN_BY_STATUS = {
    400: 'The proxy or fal found the request malformed.',
    401: 'This proxy needs a client key. Paste the key you were given into “Client key”.',
    402: 'The spending budget is used up, so no new jobs are accepted until it resets.',
    403: 'The proxy does not allow this call.',
    404: 'Not found: the route does not exist or the request is no longer known.',
    408: 'The request took too long to arrive.',
    413: 'The request is bigger than the proxy accepts: use fewer or smaller images.',
    422: 'The input did not pass validation. Fix the fields listed and try again.',
    429: 'Too many requests: slow down.',
    500: 'Something went wrong inside the proxy.',
    502: 'The proxy could not reach fal (or fal answered with an error). Try again in a moment.',
    503: 'fal or the proxy is overloaded right now. Try again shortly.',
    504: 'fal took too long to answer. Try again.',
  };

  /** "body.image_urls.0" style loc -> "image_urls[0]"; also the top-level field name. */
  function describeLoc(loc) {
    const parts = Array.isArray(loc) ? loc.slice() : [loc];
    if (parts.length > 1 && parts[0] === 'body') parts.shift();
    let text = '';
    for (const part of parts) {
      if (typeof part === 'number') text += `[${part}]`;
      else text += text ? `.${part}` : String(part);
    }
    return { text: text || 'body', field: typeof parts[0] === 'string' ? parts[0] : null, index: typeof parts[1] === 'number' ? parts[1] : null };
  }

  function explain(err) {
    if (err.network) return 'The page could not reach the proxy at all. Is it still running, and is this the right address?';
    let text = EXPLAIN[err.code] || EXPLAIN_BY_STATUS[err.status] || '';
    if (!EXPLAIN[err.code] && /^target_/.test(err.code)) text = 'The proxy refused to forward this call to fal: the URL is not one it allows.';
    if (err.status === 403 && err.code === '' && !text) text = 'The proxy does not allow this call.';
    return text;
  }

  function clearErrors() {
    ui.errors.replaceChildren();
    ui.errors.hidden = true;
  }

  function clearFieldMarks() {
    for (const node of document.querySelectorAll('.invalid')) node.classList.remove('invalid');
    for (const node of document.querySelectorAll('[aria-invalid="true"]')) node.removeAttribute('aria-invalid');
    for (const node of document.querySelectorAll('.field-error')) node.remove();
  }

  function clearFieldMark(name) {
    const target = FIELDS[name];
    if (!target) return;
    const [wrapperId, controlId] = target;
    const wrapper = byId(wrapperId);
    wrapper.classList.remove('invalid');
    byId(controlId).removeAttribute('aria-invalid');
    for (const node of wrapper.querySelectorAll('.field-error')) node.remove();
    if (name === 'image_urls') for (const node of ui.thumbs.querySelectorAll('.thumb.invalid')) node.classList.remove('invalid');
  }

  function markField(name, message, index, sentImages) {
    const target = FIELDS[name];
    if (!target) return false;
    const [wrapperId, controlId] = target;
    const wrapper = byId(wrapperId);
    wrapper.classList.add('invalid');
    byId(controlId).setAttribute('aria-invalid', 'true');
    if (name === 'image_urls' && index !== null && sentImages && sentImages[index]) {
      const item = sentImages[index];
      if (item.node) item.node.classList.add('invalid');
    }
    const anchor = name === 'image_urls' ? ui.thumbs : (wrapper.querySelector('.hint') || byId(controlId));
    const label = name === 'image_urls' && index !== null ? `Image ${index + 1}: ${message}` : message;
    anchor.after(h('p', { class: 'field-error', text: label }));
    return true;
  }

  /** Shows `err` in #errors, explained in words; highlights fields for validation errors. */
  function showError(err, context) {
    const block = h('div', { class: 'error' });
    if (!(err instanceof ProxyError)) {
      block.append(
        h('p', { class: 'error-title', text: context || 'Something went wrong' }),
        h('p', { class: 'error-message', text: String(err && err.message ? err.message : err) }),
      );
    } else {
      const title = err.network ? 'Could not reach the proxy'
        : TITLES[err.code] || context || `The proxy answered ${err.status}`;
      const chip = [err.status || null, err.code || null].filter(Boolean).join(' ');
      block.append(h('p', { class: 'error-title' }, title, chip ? h('span', { class: 'code', text: chip }) : null));
      if (context && context !== title) block.append(h('p', { class: 'error-context', text: context }));
      if (err.message) block.append(h('p', { class: 'error-message', text: err.message }));
      const detail = err.body && err.body.detail;
      if (Array.isArray(detail) && detail.length) {
        const list = h('ul', { class: 'error-list' });
        let firstControl = null;
        for (const problem of detail) {
          const loc = describeLoc(problem && problem.loc);
          const msg = (problem && problem.msg) || 'invalid';
          list.append(h('li', {}, h('code', { text: loc.text }), `: ${msg}`));
          if (loc.field && markField(loc.field, msg, loc.index, err.sentImages) && !firstControl) {
            firstControl = byId(FIELDS[loc.field][1]);
          }
        }
        block.append(list);
        if (firstControl && firstControl !== ui.imageInput) firstControl.focus({ preventScroll: true });
      }
      let text = explain(err);
      if (err.retryAt && (err.status === 429 || err.status === 503)) text = `${text} ${describeRetry(err.retryAt)}`.trim();
      else if (err.status === 429 || err.status === 503) text = `${text} Wait a little before trying again.`.trim();
      if (err.code === 'budget_exceeded' || err.status === 402) text = `${text} ${budgetResetText()}`.trim();
      if (text) block.append(h('p', { class: 'error-explain', text }));
      if (err.status === 401) {
        byId('client-key-field').classList.add('invalid');
        ui.clientKey.setAttribute('aria-invalid', 'true');
        ui.clientKey.focus({ preventScroll: true });
      }
      if (err.proxyRequestId) {
        block.append(h('p', { class: 'error-explain' }, 'Proxy request id: ', h('code', { text: err.proxyRequestId })));
      }
    }
    ui.errors.append(block);
    ui.errors.hidden = false;
  }

  function showNotice(title, message) {
    ui.errors.append(h('div', { class: 'error' }, h('p', { class: 'error-title', text: title }), h('p', { class: 'error-explain', text: message })));
    ui.errors.hidden = false;
  }

  // ---------------------------------------------------------------- "How this works": the call log

  function authHeaders() {
    const key = ui.clientKey.value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function redactedAuthLine() {
    const key = ui.clientKey.value.trim();
    return key ? `Authorization: Bearer ${'•'.repeat(Math.min(8, key.length))}\n` : '';
  }

  /** One line of JSON for the call summaries (data URIs shortened). */
  function oneLine(value) {
    if (value === null || value === undefined) return '';
    if (typeof value !== 'object') return String(value).replace(/\s+/g, ' ');
    return JSON.stringify(JSON.parse(abbreviate(value)));
  }

  /**
   * Adds an entry for one call to "How this works"; returns an object to fill in its outcome.
   * `preview` is a one-line summary of the body shown without expanding the entry.
   */
  function recordCall(method, url, requestText, preview, open) {
    ui.callsEmpty.hidden = true;
    const status = h('span', { class: 'call-status', text: '…' });
    const previewLine = h('span', { class: 'call-preview', text: preview || '' });
    const summary = h('summary', { class: 'call-head' },
      h('span', { class: 'call-line' },
        h('span', { class: `method ${method.toLowerCase()}`, text: method }),
        h('span', { class: 'call-path', text: displayUrl(url) }),
        status),
      previewLine);
    const details = h('details', { open: !!open }, summary);
    if (requestText) details.append(h('span', { class: 'call-label', text: 'Request headers and body' }), h('pre', { text: requestText }));
    // Only the newest submit stays expanded, so the list reads as a script of the latest run.
    if (open) for (const other of ui.calls.querySelectorAll('details[open]')) other.open = false;
    const item = h('li', { class: 'call' }, details);
    let responsePre = null;
    ui.calls.append(item);
    while (ui.calls.children.length > MAX_CALLS_SHOWN) ui.calls.firstElementChild.remove();
    const started = performance.now();
    return {
      finish(code, responseText, responsePreview) {
        const ms = Math.round(performance.now() - started);
        status.textContent = code ? `${code} · ${ms} ms` : `failed · ${ms} ms`;
        status.classList.add(code >= 200 && code < 300 ? 'ok' : 'bad');
        if (responseText !== undefined && responseText !== null && responseText !== '') this.response(responseText, responsePreview);
      },
      response(text, responsePreview) {
        if (!responsePre) {
          responsePre = h('pre');
          details.append(h('span', { class: 'call-label', text: 'Response' }), responsePre);
        }
        responsePre.textContent = truncate(text, 1500);
        if (!preview && responsePreview) previewLine.textContent = `→ ${responsePreview}`;
      },
      status(text, ok) {
        status.textContent = text;
        status.classList.toggle('ok', ok === true);
        status.classList.toggle('bad', ok === false);
      },
    };
  }

  /**
   * One JSON call to the proxy with the client key, recorded in the call log. Resolves with
   * {status, data, headers}; rejects with a ProxyError for any non-2xx answer.
   */
  async function callProxy(method, url, { json, signal, what } = {}) {
    const headers = { Accept: 'application/json', ...authHeaders() };
    let body;
    let requestText = redactedAuthLine();
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
      requestText += `Content-Type: application/json\n\n${abbreviate(json)}`;
    }
    const record = recordCall(method, url, requestText.trim(), json !== undefined ? oneLine(json) : '', what === 'submit');
    let response;
    try {
      response = await fetch(url, { method, headers, body, signal, cache: 'no-store' });
    } catch (err) {
      record.finish(0, isAbort(err) ? 'aborted' : String(err.message || err));
      if (isAbort(err)) throw err;
      throw new ProxyError({ network: true, what });
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    record.finish(response.status, data ? abbreviate(data) : text, data ? oneLine(data) : text.slice(0, 200));
    if (!response.ok) {
      throw new ProxyError({ status: response.status, body: data || (text ? { message: text.slice(0, 300) } : null), headers: response.headers, what });
    }
    return { status: response.status, data, headers: response.headers };
  }

  // ---------------------------------------------------------------- reference images

  function currentMode() {
    return ui.modeEdit.checked ? 'edit' : 't2i';
  }

  function setMode(mode) {
    ui.modeEdit.checked = mode === 'edit';
    ui.modeT2i.checked = mode !== 'edit';
    updateMode();
  }

  function updateMode() {
    const mode = currentMode();
    ui.endpoint.textContent = ENDPOINTS[mode];
    ui.t2iNote.hidden = !(mode === 't2i' && state.images.length > 0);
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    const images = files.filter(isImageFile);
    const skippedTypes = files.length - images.length;
    const room = MAX_IMAGES - state.images.length;
    const accepted = images.slice(0, Math.max(0, room));
    const skippedRoom = images.length - accepted.length;
    if (skippedTypes) showNotice('Some files were skipped', `${skippedTypes} file(s) were not images.`);
    if (skippedRoom) showNotice('Too many images', `The model takes at most ${MAX_IMAGES} reference images; ${skippedRoom} were not added.`);
    for (const file of accepted) {
      const item = {
        id: state.nextImageId++,
        file,
        type: guessType(file),
        previewUrl: URL.createObjectURL(file),
        state: 'pending',
        progress: 0,
        url: null,
        error: null,
        promise: null,
        controller: null,
        node: null,
      };
      state.images.push(item);
      item.promise = quiet(uploadImage(item));
    }
    if (accepted.length) {
      clearFieldMark('image_urls');
      setMode('edit');
    }
    renderThumbs();
  }

  function removeImage(item) {
    if (item.controller) item.controller.abort();
    URL.revokeObjectURL(item.previewUrl);
    state.images = state.images.filter((i) => i !== item);
    if (item.node) item.node.remove();
    if (!state.images.length && currentMode() === 'edit') setMode('t2i');
    renderThumbs();
    ui.imageInput.focus({ preventScroll: true });
  }

  function thumbLabel(item) {
    switch (item.state) {
      case 'pending': return 'Queued…';
      case 'waiting': {
        const secs = Math.max(1, Math.ceil((pool.pausedUntil - Date.now()) / 1000));
        return `Rate limited · retry in ${secs} s`;
      }
      case 'initiating': return 'Starting upload…';
      case 'uploading': return `Uploading ${Math.round(item.progress * 100)}%`;
      case 'reading': return 'Reading for inline…';
      case 'done': return 'Uploaded (https)';
      case 'inline': return 'Uploaded · sent inline';
      case 'error': return item.error ? `Failed: ${item.error}` : 'Failed';
      default: return '';
    }
  }

  function renderThumbs() {
    state.images.forEach((item, index) => {
      if (!item.node) {
        const img = h('img', { src: item.previewUrl, alt: `Reference image: ${item.file.name}` });
        item.node = h('li', { class: 'thumb', 'data-testid': 'thumb' },
          img,
          h('span', { class: 'thumb-index' }),
          h('button', {
            type: 'button',
            class: 'thumb-remove',
            'aria-label': `Remove ${item.file.name}`,
            title: `Remove ${item.file.name}`,
            onclick: () => removeImage(item),
          }, h('span', { 'aria-hidden': 'true', text: '✕' })),
          h('div', { class: 'thumb-bar' }, h('span')),
          h('div', { class: 'thumb-meta' },
            h('span', { class: 'thumb-name', text: item.file.name, title: item.file.name }),
            h('span', { class: 'thumb-state' })));
        ui.thumbs.append(item.node);
      }
      item.node.dataset.state = item.state;
      item.node.querySelector('.thumb-index').textContent = String(index + 1);
      item.node.querySelector('.thumb-state').textContent = thumbLabel(item);
      item.node.querySelector('.thumb-state').title = thumbLabel(item);
      const pct = item.state === 'done' || item.state === 'inline' ? 100
        : item.state === 'uploading' || item.state === 'reading' ? Math.round(item.progress * 100)
          : item.state === 'error' ? 100 : 0;
      item.node.querySelector('.thumb-bar span').style.width = `${pct}%`;
    });
    ui.imageCount.textContent = `${state.images.length} / ${MAX_IMAGES}`;
    ui.dropzone.classList.toggle('full', state.images.length >= MAX_IMAGES);
    ui.inlineNote.hidden = !state.images.some((i) => i.state === 'inline');
    updateMode();
  }

  function updateThumb(item) {
    if (state.images.includes(item)) renderThumbs();
  }

  /** PUTs the file to `url` with upload progress (fetch has none); resolves with the status. */
  function putFile(url, file, contentType, signal, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', url);
      xhr.setRequestHeader('Content-Type', contentType);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText });
      xhr.onerror = () => reject(new ProxyError({ network: true, what: 'upload' }));
      xhr.onabort = () => reject(abortError());
      if (signal) signal.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(file);
    });
  }

  function readDataUri(file, type) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const result = String(reader.result);
        const comma = result.indexOf(',');
        // Some browsers label unknown files application/octet-stream; the policy wants data:image/.
        resolve(`data:${type};base64,${result.slice(comma + 1)}`);
      };
      reader.onerror = () => reject(new Error(`could not read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  // Uploads share a small pool, and a 429 (the proxy's upload rate limit) pauses the whole pool
  // until its Retry-After, so adding 14 images does not turn into 14 refusals.
  const pool = { active: 0, size: 3, pausedUntil: 0 };

  async function acquireUploadSlot(item, signal) {
    for (;;) {
      const wait = pool.pausedUntil - Date.now();
      if (wait > 0) {
        if (item.state !== 'waiting') {
          item.state = 'waiting';
          updateThumb(item);
        }
        await sleep(Math.min(wait, 500), signal);
        continue;
      }
      if (pool.active < pool.size) {
        pool.active += 1;
        return;
      }
      await sleep(100, signal);
    }
  }

  function releaseUploadSlot() {
    pool.active = Math.max(0, pool.active - 1);
  }

  /** One attempt: initiate through the proxy, PUT the bytes, pick the URL for image_urls. */
  async function uploadOnce(item, signal) {
    item.state = 'initiating';
    item.progress = 0;
    updateThumb(item);
    const init = await callProxy('POST', UPLOAD_PATH, {
      json: { content_type: item.type, file_name: item.file.name },
      signal,
      what: 'upload',
    });
    const uploadUrl = init.data && init.data.upload_url;
    const fileUrl = init.data && init.data.file_url;
    if (!uploadUrl || !fileUrl) throw new Error('the upload answer had no upload_url or file_url');

    item.state = 'uploading';
    updateThumb(item);
    const record = recordCall('PUT', uploadUrl, `Content-Type: ${item.type}\n\n<${formatBytes(item.file.size)} of ${item.type}: ${item.file.name}>`,
      `<${formatBytes(item.file.size)} of ${item.type}> (no Authorization: the URL is pre-signed)`);
    let put;
    try {
      put = await putFile(uploadUrl, item.file, item.type, signal, (p) => {
        item.progress = p;
        updateThumb(item);
      });
    } catch (err) {
      record.finish(0, isAbort(err) ? 'aborted' : 'network error');
      throw err;
    }
    record.finish(put.status, put.text, put.text.slice(0, 200));
    if (put.status < 200 || put.status >= 300) {
      let body = null;
      try { body = JSON.parse(put.text); } catch (_) { body = { message: put.text.slice(0, 200) }; }
      throw new ProxyError({ status: put.status, body, what: 'upload' });
    }

    item.fileUrl = fileUrl;
    if (/^https:\/\//i.test(fileUrl)) {
      item.state = 'done';
      return fileUrl;
    }
    // The proxy's policy takes only https:// URLs or data:image URIs; the local fake serves
    // http://, so the bytes go inline.
    item.state = 'reading';
    updateThumb(item);
    const uri = await readDataUri(item.file, item.type);
    item.state = 'inline';
    return uri;
  }

  /** Uploads one image through the proxy; resolves with the URL to put in image_urls. */
  async function uploadImage(item) {
    item.controller = new AbortController();
    const { signal } = item.controller;
    item.error = null;
    item.state = 'pending';
    updateThumb(item);
    try {
      for (let attempt = 1; ; attempt += 1) {
        await acquireUploadSlot(item, signal);
        try {
          item.url = await uploadOnce(item, signal);
          updateThumb(item);
          return item.url;
        } catch (err) {
          const limited = err instanceof ProxyError && err.status === 429;
          if (!limited || attempt >= MAX_UPLOAD_ATTEMPTS) throw err;
          const until = err.retryAt ? err.retryAt.getTime() : Date.now() + 5000;
          pool.pausedUntil = Math.max(pool.pausedUntil, Math.min(until, Date.now() + 120000));
          item.state = 'waiting';
          updateThumb(item);
        } finally {
          releaseUploadSlot();
        }
      }
    } catch (err) {
      if (isAbort(err)) {
        item.state = 'pending';
        throw err;
      }
      item.state = 'error';
      item.error = err instanceof ProxyError ? (err.code || (err.network ? 'network' : `HTTP ${err.status}`)) : (err.message || 'error');
      item.lastError = err;
      updateThumb(item);
      throw err;
    } finally {
      item.controller = null;
    }
  }

  /** Waits for every image; retries failed ones. Resolves with [{item, url}]. */
  async function ensureUploads(signal) {
    const items = state.images.slice();
    for (const item of items) {
      if (item.state === 'error' || (item.state === 'pending' && !item.controller)) item.promise = quiet(uploadImage(item));
    }
    const outcomes = await untilAborted(Promise.allSettled(items.map((i) => i.promise)), signal);
    const failed = [];
    outcomes.forEach((outcome, index) => {
      if (outcome.status === 'rejected') failed.push({ item: items[index], err: outcome.reason });
    });
    if (failed.length) {
      const groups = new Map();
      for (const { item, err } of failed) {
        const key = err instanceof ProxyError ? `${err.status}|${err.code}|${err.network}` : String(err && err.message);
        if (!groups.has(key)) groups.set(key, { err, names: [] });
        groups.get(key).names.push(`“${item.file.name}”`);
      }
      for (const { err, names } of groups.values()) {
        const what = names.length === 1 ? `The upload of ${names[0]} failed.` : `The uploads of ${names.length} images failed: ${names.join(', ')}.`;
        showError(err, what);
      }
      const e = new Error('upload failed');
      e.shown = true;
      throw e;
    }
    return items.filter((i) => state.images.includes(i)).map((item) => ({ item, url: item.url }));
  }

  // ---------------------------------------------------------------- status, logs, results

  const STATUS_TITLE = 'fal-proxy playground';

  function setStatus(kind, badge, text) {
    const run = state.run;
    if (run && run.lastStatus === `${kind}|${badge}|${text}`) return;
    if (run) run.lastStatus = `${kind}|${badge}|${text}`;
    ui.status.dataset.state = kind;
    ui.status.replaceChildren(h('span', { class: 'badge', text: badge }), ' ', h('span', { class: 'status-text', text }));
    ui.progress.classList.toggle('active', ['working', 'queued', 'running'].includes(kind));
    ui.progress.classList.toggle('done', kind === 'done');
    document.title = kind === 'idle' ? STATUS_TITLE : `${badge} · ${STATUS_TITLE}`;
  }

  function appendLogs(run, lines) {
    for (const line of lines) {
      if (!line) continue;
      const when = line.timestamp ? new Date(line.timestamp) : null;
      const level = String(line.level || 'INFO').toUpperCase();
      ui.logs.append(h('li', {},
        h('span', { class: 'log-time', text: when && !Number.isNaN(when.getTime()) ? clockTime(when) : '' }),
        h('span', { class: `log-level ${level.toLowerCase()}`, text: level }),
        h('span', { class: 'log-message', text: String(line.message ?? '') })));
      run.logCount += 1;
    }
    ui.logsEmpty.hidden = ui.logs.children.length > 0;
    ui.logs.scrollTop = ui.logs.scrollHeight;
  }

  /** Shows one status object; `incremental` when its logs are only the new lines (stream). */
  function applyStatus(run, status, incremental) {
    if (!status || typeof status !== 'object') return;
    const logs = Array.isArray(status.logs) ? status.logs : [];
    if (incremental) appendLogs(run, logs);
    else if (logs.length > run.logCount) appendLogs(run, logs.slice(run.logCount));

    if (status.status === 'IN_QUEUE') {
      const pos = Number.isFinite(status.queue_position) ? status.queue_position : null;
      ui.queuePosition.textContent = pos === null ? '–' : String(pos);
      const where = pos === null ? '' : pos === 0 ? ' You are next.' : ` Queue position ${pos}.`;
      setStatus('queued', 'IN_QUEUE', `Waiting in fal's queue.${where}`);
    } else if (status.status === 'IN_PROGRESS') {
      ui.queuePosition.textContent = '–';
      setStatus('running', 'IN_PROGRESS', run.cancelRequested ? 'Cancellation requested…' : 'Generating…');
    } else if (status.status === 'COMPLETED') {
      ui.queuePosition.textContent = '–';
    }
  }

  function startClock(run) {
    const tick = () => {
      const end = run.endedAt || performance.now();
      ui.elapsed.textContent = `${((end - run.startedAt) / 1000).toFixed(1)} s`;
    };
    tick();
    run.clock = setInterval(tick, 100);
  }

  function stopClock(run) {
    run.endedAt = performance.now();
    clearInterval(run.clock);
    ui.elapsed.textContent = `${((run.endedAt - run.startedAt) / 1000).toFixed(1)} s`;
  }

  function extensionFor(image) {
    const fromType = TYPE_EXTS[String(image.content_type || '').toLowerCase()];
    return fromType || ui.outputFormat.value.replace('jpeg', 'jpg');
  }

  function fileNameFor(image, index) {
    if (image.file_name && /\.[a-z0-9]+$/i.test(image.file_name)) return image.file_name;
    try {
      const last = new URL(image.url).pathname.split('/').pop();
      if (last && /\.[a-z0-9]+$/i.test(last)) return decodeURIComponent(last);
    } catch (_) { /* data: URIs and the like */ }
    return `image-${index + 1}.${extensionFor(image)}`;
  }

  function dataUriToBlob(uri) {
    const comma = uri.indexOf(',');
    const meta = uri.slice(5, comma);
    const type = meta.split(';')[0] || 'application/octet-stream';
    if (meta.includes(';base64')) {
      const bin = atob(uri.slice(comma + 1));
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
      return new Blob([bytes], { type });
    }
    return new Blob([decodeURIComponent(uri.slice(comma + 1))], { type });
  }

  async function download(image, index, button) {
    const name = fileNameFor(image, index);
    const label = button.textContent;
    button.disabled = true;
    button.textContent = 'Saving…';
    try {
      let blob;
      if (String(image.url).startsWith('data:')) {
        blob = dataUriToBlob(image.url);
      } else {
        const response = await fetch(image.url, { cache: 'force-cache' });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        blob = await response.blob();
      }
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: name, class: 'visually-hidden' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 30000);
    } catch (_) {
      // Cross-origin images without CORS cannot be read as blobs: open them instead.
      window.open(image.url, '_blank', 'noopener');
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  function renderResults(result, prompt) {
    const images = Array.isArray(result && result.images) ? result.images : [];
    ui.results.replaceChildren();
    const shortPrompt = prompt.length > 80 ? `${prompt.slice(0, 77)}…` : prompt;
    images.forEach((image, index) => {
      if (!image || !image.url) return;
      const dims = image.width && image.height ? `${image.width} × ${image.height}` : 'Size unknown';
      const format = String(image.content_type || '').replace(/^image\//, '').toUpperCase() || extensionFor(image).toUpperCase();
      const bits = [format, image.file_size ? formatBytes(image.file_size) : null].filter(Boolean).join(' · ');
      const img = h('img', {
        src: image.url,
        alt: `Generated image ${index + 1} of ${images.length}: ${shortPrompt}`,
        decoding: 'async',
      });
      if (image.width && image.height) {
        img.width = image.width;
        img.height = image.height;
      }
      const button = h('button', { type: 'button', class: 'button secondary tiny', 'data-testid': 'download' }, 'Download');
      button.setAttribute('aria-label', `Download image ${index + 1} (${fileNameFor(image, index)})`);
      button.addEventListener('click', () => download(image, index, button));
      ui.results.append(h('figure', { class: 'result', 'data-testid': 'result' },
        h('a', { class: 'result-link', href: image.url, target: '_blank', rel: 'noopener', title: 'Open full size' }, img),
        h('figcaption', {},
          h('div', { class: 'result-info' }, h('strong', { text: dims }), h('span', { text: bits })),
          button)));
    });
    const description = result && typeof result.description === 'string' ? result.description.trim() : '';
    ui.description.textContent = description;
    ui.description.hidden = !description;
    ui.resultsEmpty.hidden = ui.results.children.length > 0;
    if (!images.length) {
      ui.resultsEmpty.hidden = false;
      ui.resultsEmpty.textContent = 'The job finished but returned no images.';
    }
    return images.length;
  }

  // ---------------------------------------------------------------- watching a job

  function streamUrl(statusUrl) {
    const u = new URL(statusUrl, location.href);
    u.pathname = `${u.pathname.replace(/\/$/, '')}/stream`;
    u.searchParams.set('logs', '1');
    return u.href;
  }

  function pollUrl(statusUrl) {
    const u = new URL(statusUrl, location.href);
    u.searchParams.set('logs', '1');
    return u.href;
  }

  /**
   * Reads the server-sent status stream with fetch (so the Authorization header goes along).
   * Resolves with the COMPLETED status, or null when the stream ended early.
   */
  async function watchStream(run) {
    const url = streamUrl(run.job.status_url);
    const local = new AbortController();
    const onRunAbort = () => local.abort();
    run.controller.signal.addEventListener('abort', onRunAbort, { once: true });
    let stall = null;
    const armStall = () => {
      clearTimeout(stall);
      stall = setTimeout(() => { local.abort(); }, STREAM_STALL_MS);
    };
    const record = recordCall('GET', url, `${redactedAuthLine()}Accept: text/event-stream`.trim());
    let events = 0;
    ui.watchMode.textContent = 'SSE stream';
    try {
      armStall();
      let response;
      try {
        response = await fetch(url, {
          headers: { Accept: 'text/event-stream', ...authHeaders() },
          signal: local.signal,
          cache: 'no-store',
        });
      } catch (err) {
        record.finish(0, isAbort(err) ? 'aborted' : String(err.message || err));
        if (run.controller.signal.aborted) throw err;
        return null;
      }
      if (!response.ok || !response.body) {
        const text = await response.text().catch(() => '');
        record.finish(response.status, text);
        return null;
      }
      record.status(`${response.status} · streaming…`, true);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let data = [];
      let eventName = '';
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (run.controller.signal.aborted) throw err;
          record.status(`${response.status} · broke after ${events} events`, false);
          return null;
        }
        if (chunk.done) break;
        armStall();
        buffer += decoder.decode(chunk.value, { stream: true });
        let newline;
        while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
          if (line === '') {
            if (data.length) {
              const payload = data.join('\n');
              data = [];
              const name = eventName;
              eventName = '';
              let status;
              try { status = JSON.parse(payload); } catch (_) { continue; }
              events += 1;
              record.status(`${response.status} · ${events} event${events === 1 ? '' : 's'}`, true);
              record.response(`event ${events}:\n${abbreviate(status)}`, `event ${events}: ${status.status || '?'}${Array.isArray(status.logs) && status.logs.length ? ` + ${status.logs.length} log line(s)` : ''}`);
              if (name === 'error' || !status.status) continue;
              applyStatus(run, status, true);
              if (status.status === 'COMPLETED') {
                reader.cancel().catch(() => {});
                return status;
              }
            }
            eventName = '';
            continue;
          }
          if (line.startsWith(':')) continue; // keep-alive comment
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') data.push(value);
          else if (field === 'event') eventName = value;
        }
      }
      record.status(`${response.status} · ended after ${events} events`, false);
      return null;
    } finally {
      clearTimeout(stall);
      run.controller.signal.removeEventListener('abort', onRunAbort);
    }
  }

  /** Polls the status once a second until COMPLETED. */
  async function watchPoll(run) {
    const url = pollUrl(run.job.status_url);
    ui.watchMode.textContent = 'polling (1 s)';
    const record = recordCall('GET', url, `${redactedAuthLine()}(polled every second)`.trim());
    let polls = 0;
    let failures = 0;
    for (;;) {
      let response;
      let data = null;
      try {
        response = await fetch(url, { headers: { Accept: 'application/json', ...authHeaders() }, signal: run.controller.signal, cache: 'no-store' });
        const text = await response.text();
        try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
      } catch (err) {
        if (isAbort(err)) throw err;
        failures += 1;
        record.status(`unreachable (${failures}/${POLL_MAX_FAILURES})`, false);
        if (failures >= POLL_MAX_FAILURES) throw new ProxyError({ network: true, what: 'status' });
        await sleep(POLL_INTERVAL_MS, run.controller.signal);
        continue;
      }
      polls += 1;
      if (data) record.response(abbreviate(data), `${data.status || oneLine(data).slice(0, 120)}`);
      if (!response.ok) {
        failures += 1;
        record.status(`${response.status} × ${polls}`, false);
        const transient = [502, 503, 504].includes(response.status) || response.status === 429;
        if (!transient || failures >= POLL_MAX_FAILURES) {
          throw new ProxyError({ status: response.status, body: data, headers: response.headers, what: 'status' });
        }
      } else {
        failures = 0;
        record.status(`${response.status} × ${polls}`, true);
        applyStatus(run, data, false);
        if (data && data.status === 'COMPLETED') return data;
      }
      await sleep(POLL_INTERVAL_MS, run.controller.signal);
    }
  }

  async function watch(run) {
    try {
      const final = await watchStream(run);
      if (final) return final;
    } catch (err) {
      if (isAbort(err) || run.controller.signal.aborted) throw err;
    }
    return watchPoll(run);
  }

  // ---------------------------------------------------------------- submit and cancel

  function buildInput(mode, sent) {
    const input = { prompt: ui.prompt.value };
    // Edit without images: leave image_urls out so the proxy's validation explains it.
    if (mode === 'edit' && sent.length) input.image_urls = sent.map((s) => s.url);
    const num = ui.numImages.value.trim();
    if (num !== '') input.num_images = Number(num);
    input.aspect_ratio = ui.aspectRatio.value;
    input.resolution = ui.resolution.value;
    input.output_format = ui.outputFormat.value;
    const seed = ui.seed.value.trim();
    if (seed !== '') input.seed = Number(seed);
    return input;
  }

  function resetOutput() {
    ui.logs.replaceChildren();
    ui.logsEmpty.hidden = false;
    ui.results.replaceChildren();
    ui.resultsEmpty.hidden = false;
    ui.resultsEmpty.textContent = 'Generated images show up here.';
    ui.description.hidden = true;
    ui.facts.hidden = true;
    ui.requestId.textContent = '–';
    ui.queuePosition.textContent = '–';
    ui.watchMode.textContent = '–';
  }

  function setBusy(busy) {
    ui.submit.disabled = busy;
    ui.cancel.disabled = !busy;
    ui.submit.replaceChildren(...(busy ? [h('span', { class: 'busy-dot', 'aria-hidden': 'true' }), 'Generating…'] : ['Generate']));
    ui.form.setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  async function requestCancel(run) {
    ui.cancel.disabled = true;
    setStatus(ui.status.dataset.state, ui.status.querySelector('.badge').textContent, 'Cancellation requested…');
    try {
      const res = await callProxy('PUT', run.job.cancel_url, { what: 'cancel' });
      run.cancelAnswer = res.data && res.data.status;
    } catch (err) {
      const already = err instanceof ProxyError && err.body && err.body.status === 'ALREADY_COMPLETED';
      if (!already) showError(err, 'Could not cancel');
    }
  }

  function onCancel() {
    const run = state.run;
    if (!run || run.finished || run.cancelRequested) return;
    run.cancelRequested = true;
    if (run.job) {
      requestCancel(run);
    } else if (run.phase === 'uploads') {
      run.controller.abort();
    } else {
      // The submit is in flight: cancel as soon as its request id is known.
      ui.cancel.disabled = true;
      setStatus('working', 'CANCELLING', 'Cancelling as soon as the job is accepted…');
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (state.run && !state.run.finished) return;
    clearErrors();
    clearFieldMarks();
    resetOutput();
    const run = {
      id: ++state.runCounter,
      controller: new AbortController(),
      startedAt: performance.now(),
      endedAt: null,
      clock: null,
      job: null,
      phase: 'start',
      logCount: 0,
      cancelRequested: false,
      finished: false,
      lastStatus: '',
    };
    state.run = run;
    setBusy(true);
    startClock(run);
    const mode = currentMode();
    const endpoint = ENDPOINTS[mode];
    const prompt = ui.prompt.value;
    let sent = [];
    try {
      if (mode === 'edit' && state.images.length) {
        run.phase = 'uploads';
        const waiting = state.images.some((i) => !['done', 'inline'].includes(i.state));
        if (waiting) setStatus('working', 'UPLOADING', `Uploading ${state.images.length} reference image(s) through the proxy…`);
        sent = await ensureUploads(run.controller.signal);
      }
      run.phase = 'submit';
      setStatus('working', 'SUBMITTING', `POST /queue/${endpoint}`);
      const input = buildInput(mode, sent);
      let submitted;
      try {
        submitted = await callProxy('POST', `/queue/${endpoint}`, { json: input, what: 'submit' });
      } catch (err) {
        if (err instanceof ProxyError) err.sentImages = sent.map((s) => s.item);
        throw err;
      }
      const job = submitted.data || {};
      if (!job.status_url || !job.response_url) throw new Error('The submit answer had no status_url/response_url.');
      run.job = job;
      run.phase = 'watch';
      ui.facts.hidden = false;
      ui.requestId.textContent = job.request_id || '–';
      revealIfBelow(byId('run'));
      applyStatus(run, { ...job, status: job.status || 'IN_QUEUE', logs: [] }, true);
      if (run.cancelRequested) requestCancel(run);
      else ui.cancel.disabled = false;

      const final = await watch(run);
      if (final.error || run.cancelAnswer === 'CANCELLATION_REQUESTED') {
        const cancelled = run.cancelRequested || /cancel/i.test(String(final.error || ''));
        if (cancelled) {
          setStatus('cancelled', 'COMPLETED', 'Cancelled: the job was stopped and gives no result.');
        } else {
          setStatus('failed', 'COMPLETED', `The job failed: ${final.error}`);
          showError(new Error(String(final.error)), 'fal reported that the job failed');
        }
        return;
      }
      run.phase = 'result';
      setStatus('running', 'FINISHING', 'Done at fal; fetching the result…');
      const result = await callProxy('GET', job.response_url, { signal: run.controller.signal, what: 'result' });
      const count = renderResults(result.data, prompt);
      const inference = final.metrics && Number.isFinite(final.metrics.inference_time)
        ? ` Inference ${final.metrics.inference_time.toFixed(1)} s.` : '';
      setStatus('done', 'COMPLETED', `${count} image${count === 1 ? '' : 's'} ready.${inference}`);
    } catch (err) {
      if (isAbort(err)) {
        setStatus('cancelled', 'CANCELLED', run.job ? 'Stopped watching.' : 'Cancelled before anything was submitted.');
      } else {
        if (!err.shown) showError(err, contextFor(err));
        const badge = err instanceof ProxyError && err.status ? `ERROR ${err.status}` : 'ERROR';
        setStatus('failed', badge, run.job ? 'The job could not be followed to the end; see the errors.' : 'Nothing was generated; see the errors.');
        if (!ui.errors.hidden) ui.errors.scrollIntoView({ block: 'nearest' });
      }
    } finally {
      run.finished = true;
      stopClock(run);
      setBusy(false);
      refreshUsageSoon();
    }
  }

  /** On a phone the status sits below the form: bring it up once there is something to watch. */
  function revealIfBelow(node) {
    const rect = node.getBoundingClientRect();
    if (rect.top < window.innerHeight - 80) return;
    const reduce = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    node.scrollIntoView({ block: 'start', behavior: reduce ? 'auto' : 'smooth' });
  }

  function contextFor(err) {
    if (!(err instanceof ProxyError)) return 'Something went wrong';
    switch (err.what) {
      case 'submit': return err.status === 422 ? 'The input was refused' : 'While submitting the job.';
      case 'status': return 'While watching the job.';
      case 'result': return 'While fetching the result.';
      default: return undefined;
    }
  }

  // ---------------------------------------------------------------- limits and budget (GET /v1/me)

  let usageSeq = 0;
  let usageMissing = false;
  let lastMe = null;

  /** "The daily budget resets …" from the last /v1/me answer, when one is used up. */
  function budgetResetText() {
    const budgets = lastMe && lastMe.budget;
    if (!budgets) return '';
    const out = [];
    for (const [name, b] of [['daily', budgets.daily], ['monthly', budgets.monthly]]) {
      if (!b || !Number.isFinite(b.limit_usd) || !Number.isFinite(b.resets_at)) continue;
      const when = new Date(b.resets_at * 1000);
      out.push(`The ${name} budget (${money(b.used_usd)} of ${money(b.limit_usd)} used) resets ${when.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}.`);
    }
    return out.join(' ');
  }

  function money(n) {
    return Number.isFinite(n) ? `$${n.toFixed(2)}` : '?';
  }

  function budgetText(label, b) {
    if (!b || b.limit_usd === null || b.limit_usd === undefined) return null;
    const left = Number.isFinite(b.images_left) ? ` (about ${b.images_left} image${b.images_left === 1 ? '' : 's'} left)` : '';
    return `${label} ${money(b.used_usd)} of ${money(b.limit_usd)} used${left}`;
  }

  /** Shows what this client may still do, from the proxy's GET /v1/me (skipped if absent). */
  async function refreshUsage() {
    if (usageMissing) return;
    const seq = ++usageSeq;
    let me;
    try {
      me = (await callProxy('GET', '/v1/me', { what: 'me' })).data;
    } catch (err) {
      if (seq !== usageSeq) return;
      if (err instanceof ProxyError && (err.status === 404 || err.status === 405)) {
        usageMissing = true;
        ui.usage.hidden = true;
      } else if (err instanceof ProxyError && err.status === 401) {
        ui.usage.textContent = err.code === 'invalid_credentials'
          ? 'This client key is not accepted by the proxy.'
          : 'This proxy needs a client key: anonymous use is off.';
        ui.usage.dataset.tone = 'bad';
        ui.usage.hidden = false;
      } else {
        ui.usage.hidden = true;
      }
      return;
    }
    if (seq !== usageSeq || !me || typeof me !== 'object') return;
    lastMe = me;
    const who = me.kind === 'anonymous' ? 'Anonymous' : `Client “${me.client_id}”`;
    const parts = [`${who}${me.plan ? ` · plan ${me.plan}` : ''}`];
    const limits = me.limits || {};
    if (Number.isFinite(limits.max_jobs_in_flight)) {
      parts.push(`jobs running ${Number(me.jobs_in_flight) || 0} of ${limits.max_jobs_in_flight}`);
    }
    if (limits.submit && Number.isFinite(limits.submit.per_minute)) parts.push(`${limits.submit.per_minute} submits/min`);
    const budgets = me.budget || {};
    const daily = budgetText('today', budgets.daily);
    const monthly = budgetText('this month', budgets.monthly);
    if (daily) parts.push(daily);
    else if (monthly) parts.push(monthly);
    const exhausted = [budgets.daily, budgets.monthly].some((b) => b && Number.isFinite(b.remaining_usd) && b.remaining_usd <= 0);
    ui.usage.textContent = parts.join(' · ');
    ui.usage.dataset.tone = exhausted ? 'bad' : '';
    ui.usage.hidden = false;
  }

  let usageTimer = null;
  function refreshUsageSoon() {
    clearTimeout(usageTimer);
    usageTimer = setTimeout(refreshUsage, 700);
  }

  // ---------------------------------------------------------------- wiring

  function updatePromptCount() {
    const n = codePoints(ui.prompt.value);
    ui.promptCount.textContent = `${n.toLocaleString('en-US')} / ${PROMPT_MAX.toLocaleString('en-US')}`;
    ui.promptCount.classList.toggle('over', (n > 0 && n < PROMPT_MIN) || n > PROMPT_MAX);
  }

  function loadClientKey() {
    try {
      ui.clientKey.value = localStorage.getItem(KEY_STORAGE) || '';
    } catch (_) { /* storage disabled */ }
  }

  function saveClientKey() {
    try {
      const key = ui.clientKey.value.trim();
      if (key) localStorage.setItem(KEY_STORAGE, key);
      else localStorage.removeItem(KEY_STORAGE);
    } catch (_) { /* storage disabled */ }
  }

  function hasFiles(event) {
    const types = event.dataTransfer && event.dataTransfer.types;
    return !!types && Array.from(types).includes('Files');
  }

  function wire() {
    ui.form.addEventListener('submit', onSubmit);
    ui.cancel.addEventListener('click', onCancel);

    ui.modeEdit.addEventListener('change', updateMode);
    ui.modeT2i.addEventListener('change', updateMode);

    ui.imageInput.addEventListener('change', () => {
      addFiles(ui.imageInput.files);
      ui.imageInput.value = '';
    });

    let depth = 0;
    ui.dropzone.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth += 1;
      ui.dropzone.classList.add('dragging');
    });
    ui.dropzone.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    ui.dropzone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) ui.dropzone.classList.remove('dragging');
    });
    ui.dropzone.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      ui.dropzone.classList.remove('dragging');
      addFiles(e.dataTransfer && e.dataTransfer.files);
    });
    // A file dropped beside the zone should not navigate away from the page.
    window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
    window.addEventListener('drop', (e) => { if (hasFiles(e)) e.preventDefault(); });
    // Pasting an image adds it too.
    document.addEventListener('paste', (e) => {
      const files = Array.from((e.clipboardData && e.clipboardData.files) || []).filter(isImageFile);
      if (files.length) {
        e.preventDefault();
        addFiles(files);
      }
    });

    ui.prompt.addEventListener('input', () => {
      updatePromptCount();
      clearFieldMark('prompt');
    });
    ui.prompt.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        ui.form.requestSubmit();
      }
    });
    for (const [name, control] of [
      ['num_images', ui.numImages], ['aspect_ratio', ui.aspectRatio], ['resolution', ui.resolution],
      ['output_format', ui.outputFormat], ['seed', ui.seed],
    ]) {
      control.addEventListener('input', () => clearFieldMark(name));
      control.addEventListener('change', () => clearFieldMark(name));
    }

    ui.clientKey.addEventListener('input', () => {
      saveClientKey();
      refreshUsageSoon();
      byId('client-key-field').classList.remove('invalid');
      ui.clientKey.removeAttribute('aria-invalid');
    });
    ui.clientKeyToggle.addEventListener('click', () => {
      const show = ui.clientKey.type === 'password';
      ui.clientKey.type = show ? 'text' : 'password';
      ui.clientKeyToggle.textContent = show ? 'Hide' : 'Show';
      ui.clientKeyToggle.setAttribute('aria-pressed', show ? 'true' : 'false');
    });
  }

  loadClientKey();
  wire();
  updatePromptCount();
  updateMode();
  renderThumbs();
  // Rate-limit countdowns on the thumbnails.
  setInterval(() => {
    if (state.images.some((i) => i.state === 'waiting')) renderThumbs();
  }, 1000);
  refreshUsage();
})();

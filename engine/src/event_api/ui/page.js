'use strict';
// The runs page's script. Everything from the API goes into the page as
// text nodes or attribute values, never as markup. The token stays in this
// tab (sessionStorage) and is sent only as a bearer header to this origin.
(function () {
  const TOKEN_KEY = 'stackctl-runs-token';
  // Without storage (disabled by policy), the token lives as long as the page.
  let memoryToken = null;
  // Renders started later win: a slow answer for an old view is dropped.
  let generation = 0;

  const $ = (id) => document.getElementById(id);

  class PageError extends Error {}

  function getToken() {
    try {
      const stored = sessionStorage.getItem(TOKEN_KEY);
      if (stored !== null) return stored;
    } catch (_) { /* storage unavailable */ }
    return memoryToken;
  }

  function setToken(token) {
    memoryToken = token;
    try {
      if (token === null) sessionStorage.removeItem(TOKEN_KEY);
      else sessionStorage.setItem(TOKEN_KEY, token);
    } catch (_) { /* storage unavailable */ }
  }

  function fragment() {
    return new URLSearchParams(location.hash.replace(/^#/, ''));
  }

  // The token leaves the fragment at once so that it is not kept in the
  // address bar or the history.
  function takeTokenFromFragment() {
    const params = fragment();
    const token = params.get('token');
    if (token === null) return;
    setToken(token);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }

  async function api(path) {
    const token = getToken();
    if (!token) {
      throw new PageError('No runs API token: enter the stack\'s api_token above, or open this page as /ui#token=<api_token>.');
    }
    let resp;
    try {
      // Relative, so the page works under a path prefix (an API stage) too.
      resp = await fetch(new URL(path, location.href), {
        headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new PageError('The runs API did not answer: ' + e.message);
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    const detail = body && typeof body.error === 'string' ? body.error : resp.statusText;
    if (resp.status === 401) {
      throw new PageError('The runs API refused the token (401: ' + detail + '). Enter the stack\'s api_token above.');
    }
    if (!resp.ok) throw new PageError('The runs API answered ' + resp.status + ': ' + detail);
    return body;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === 'class') node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function formatTime(ms) {
    if (typeof ms !== 'number') return '';
    return new Date(ms).toISOString().replace('T', ' ').replace(/Z$/, ' UTC');
  }

  function formatDuration(ms) {
    if (typeof ms !== 'number' || ms < 0) return '';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(2) + ' s';
    const s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function runDuration(run) {
    if (typeof run.ended_at === 'number') return formatDuration(run.ended_at - run.created_at);
    return run.status === 'running' ? 'running for ' + formatDuration(Date.now() - run.created_at) : '';
  }

  function statusBadge(status) {
    return el('span', { class: 'status status-' + String(status).replace(/[^a-z_]/g, '') }, status);
  }

  function setMessage(text) {
    const msg = $('message');
    msg.textContent = text || '';
    msg.hidden = !text;
  }

  function showView(id) {
    for (const view of ['runs-view', 'run-view']) $(view).hidden = view !== id;
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function renderFunctions(functions, selected) {
    const rows = functions.map((f) => {
      const triggers = (f.triggers || []).map((t) => {
        if (typeof t.cron === 'string') return 'cron ' + t.cron;
        return t.event + (t.if ? ' if ' + t.if : '');
      });
      const steps = (f.steps || []).map((s) => s.id);
      return el('tr', { class: 'function', 'data-function-id': f.id },
        el('td', null, el('a', { href: '#' + new URLSearchParams({ function: f.id }) }, f.id)),
        el('td', null, f.name || ''),
        el('td', null, triggers.join(', ')),
        el('td', { class: 'steps-of-function' }, steps.length + ': ' + steps.join(', ')));
    });
    replaceRows($('functions').tBodies[0], rows);
    const select = $('filter-function');
    const options = [el('option', { value: '' }, 'all')].concat(
      functions.map((f) => el('option', { value: f.id }, f.id)));
    select.replaceChildren(...options);
    select.value = selected;
  }

  function renderRuns(list) {
    const rows = (list.runs || []).map((run) => el('tr', { class: 'run', 'data-run-id': run.id, 'data-status': run.status },
      el('td', null, el('a', { href: '#' + new URLSearchParams({ run: run.id }) }, el('code', null, run.id))),
      el('td', { class: 'function-id' }, run.function_id),
      el('td', null, statusBadge(run.status)),
      el('td', null, formatTime(run.created_at)),
      el('td', null, runDuration(run))));
    if (rows.length === 0) {
      rows.push(el('tr', { class: 'empty' }, el('td', { colspan: 5 }, 'No runs.')));
    }
    replaceRows($('runs').tBodies[0], rows);
    $('runs-more').hidden = !list.more;
  }

  async function showRuns(params, mine) {
    const fn = params.get('function') || '';
    const status = params.get('status') || '';
    const query = new URLSearchParams({ limit: '50' });
    if (fn) query.set('function', fn);
    if (status) query.set('status', status);
    const [runs, functions] = await Promise.all([api('v1/runs?' + query), api('v1/functions')]);
    if (mine !== generation) return;
    renderFunctions(functions.functions || [], fn);
    $('filter-status').value = status;
    renderRuns(runs);
    showView('runs-view');
  }

  // A step's span and its attempts, in ms since the epoch; null when it never ran.
  function stepSpans(step, now) {
    const attempts = (step.attempts || []).map((a, i, all) => {
      const open = a.running && i === all.length - 1 && !step.outcome;
      return { number: a.number, start: a.started_at, end: open ? now : Math.max(a.ended_at, a.started_at), error: a.error, host: a.host, running: !!a.running };
    });
    const start = typeof step.started_at === 'number' ? step.started_at : (attempts.length ? attempts[0].start : null);
    let end = typeof step.ended_at === 'number' ? step.ended_at : null;
    if (end === null && attempts.length) end = Math.max(...attempts.map((a) => a.end));
    if (start === null) return { attempts, start: null, end: null };
    return { attempts, start, end: end === null ? now : Math.max(end, start) };
  }

  function outcomeOf(step) {
    if (!step.outcome) return (step.attempts || []).some((a) => a.running) ? 'running' : 'pending';
    return step.outcome.status;
  }

  // A step that completed after failed attempts has no error of its own:
  // those errors show with its attempts.
  function stepError(step) {
    if (step.outcome) return typeof step.outcome.error === 'string' ? step.outcome.error : '';
    const failed = (step.attempts || []).filter((a) => typeof a.error === 'string');
    return failed.length ? failed[failed.length - 1].error : '';
  }

  function percent(x) {
    return (Math.min(Math.max(x, 0), 100)).toFixed(3) + '%';
  }

  function renderTimeline(run, steps) {
    const now = Date.now();
    const spans = steps.map((s) => ({ step: s, ...stepSpans(s, now) }));
    const ran = spans.filter((s) => s.start !== null);
    const t0 = Math.min(run.created_at, ...ran.map((s) => s.start));
    const t1 = Math.max(typeof run.ended_at === 'number' ? run.ended_at : now, ...ran.map((s) => s.end));
    const total = Math.max(t1 - t0, 1);
    spans.sort((a, b) => (a.start === null) - (b.start === null) || a.start - b.start);
    const rows = spans.map((s) => {
      const outcome = outcomeOf(s.step);
      const track = el('div', { class: 'tl-track' });
      if (s.start === null) {
        track.append(el('span', { class: 'tl-none' }, outcome === 'skipped' ? 'skipped' : 'not started'));
      } else {
        const bar = el('div', {
          class: 'tl-bar outcome-' + outcome,
          'data-offset-ms': s.start - t0,
          'data-duration-ms': s.end - s.start,
          title: s.step.step_id + ': ' + outcome + ', ' + formatDuration(s.end - s.start),
        });
        // CSSOM, not a style attribute: the CSP allows no inline style attributes.
        bar.style.left = percent(((s.start - t0) / total) * 100);
        bar.style.width = percent(Math.max(((s.end - s.start) / total) * 100, 0.5));
        track.append(bar);
        for (const a of s.attempts) {
          const mark = el('div', {
            class: 'tl-attempt ' + (a.running ? 'attempt-running' : a.error ? 'attempt-failed' : 'attempt-ok'),
            'data-attempt': a.number,
            title: 'attempt ' + a.number + ': ' + formatDuration(a.end - a.start) + (a.error ? ', ' + a.error : ''),
          });
          mark.style.left = percent(((a.start - t0) / total) * 100);
          mark.style.width = percent(Math.max(((a.end - a.start) / total) * 100, 0.3));
          track.append(mark);
        }
      }
      return el('div', { class: 'tl-row', 'data-step': s.step.step_id, 'data-outcome': outcome },
        el('span', { class: 'tl-label' }, s.step.step_id), track);
    });
    const axis = el('div', { class: 'tl-row tl-axis' }, el('span', { class: 'tl-label' }, ''),
      el('div', { class: 'tl-track' }, el('span', { class: 'tl-start' }, '0'),
        el('span', { class: 'tl-end' }, formatDuration(total))));
    $('timeline').replaceChildren(...rows, axis);
  }

  function renderSteps(steps) {
    const now = Date.now();
    const rows = steps.map((step) => {
      const s = stepSpans(step, now);
      const attempts = el('ol', { class: 'attempts' }, ...s.attempts.map((a) => el('li', null,
        formatDuration(a.end - a.start) + (a.running ? ' (running or interrupted)' : '')
        + (a.host ? ' on ' + a.host : '') + (a.error ? ': ' + a.error : ''))));
      return el('tr', { class: 'step', 'data-step': step.step_id },
        el('td', null, step.step_id),
        el('td', null, statusBadge(outcomeOf(step))),
        el('td', null, attempts),
        el('td', null, formatTime(s.start)),
        el('td', null, s.start === null ? '' : formatDuration(s.end - s.start)),
        el('td', { class: 'error' }, stepError(step)));
    });
    replaceRows($('steps').tBodies[0], rows);
  }

  async function showRun(id, mine) {
    const view = await api('v1/runs/' + encodeURIComponent(id));
    if (mine !== generation) return;
    $('run-id').textContent = view.id;
    const details = [
      ['Function', view.function_id],
      ['Status', statusBadge(view.status)],
      ['Event', (view.event && view.event.name) || ''],
      ['Created', formatTime(view.created_at)],
      ['Ended', formatTime(view.ended_at)],
      ['Duration', runDuration(view)],
    ];
    if (view.error) details.push(['Error', view.error]);
    $('run-details').replaceChildren(...details.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
    const steps = view.steps || [];
    renderTimeline(view, steps);
    renderSteps(steps);
    showView('run-view');
  }

  async function render() {
    const mine = ++generation;
    document.body.dataset.state = 'loading';
    setMessage('');
    const params = fragment();
    try {
      const run = params.get('run');
      if (run) await showRun(run, mine);
      else await showRuns(params, mine);
      if (mine === generation) document.body.dataset.state = 'ready';
    } catch (e) {
      if (mine !== generation) return;
      showView(null);
      setMessage(e instanceof PageError ? e.message : 'The page failed: ' + e);
      document.body.dataset.state = 'error';
    }
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('token-input');
    setToken(input.value.trim() || null);
    input.value = '';
    render();
  });
  $('forget-token').addEventListener('click', () => {
    setToken(null);
    render();
  });
  $('filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams();
    if ($('filter-function').value) params.set('function', $('filter-function').value);
    if ($('filter-status').value) params.set('status', $('filter-status').value);
    const next = params.toString();
    // Setting the fragment it already has fires no hashchange.
    if (location.hash.replace(/^#/, '') === next) render();
    else location.hash = next;
  });
  window.addEventListener('hashchange', () => {
    takeTokenFromFragment();
    render();
  });
  takeTokenFromFragment();
  render();
})();

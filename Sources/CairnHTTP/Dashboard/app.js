// Cairn's dashboard: plain JavaScript, no framework, no build step. It reads the JSON API and
// its Server-Sent Event streams (through fetch, so the token goes in a header, not a URL).
'use strict';

const STATES = ['done', 'running', 'failed', 'waiting', 'interrupted'];
const PAGE = 50;
let token = localStorage.getItem('cairn.token') || '';
let view = null; // the page shown: { stop() }
let open = false; // the coordinator has no token: nothing to ask

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const ns = attrs && attrs.svg ? 'http://www.w3.org/2000/svg' : null;
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'svg' || v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, el = document) => el.querySelector(sel);
const main = () => $('#main');

function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s) || s < 0) return '—';
  if (s < 1) return Math.round(s * 1000) + ' ms';
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + Math.round(s % 60) + 's';
  return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
}
function runDuration(r) {
  const end = r.finished_at || (['running', 'queued'].includes(r.status) ? Date.now() / 1000 : r.updated_at);
  return end - r.created_at;
}
function fmtCost(c) { return c ? '$' + Number(c).toFixed(c < 1 ? 4 : 2) : '—'; }
function badge(status) { return h('span', { class: 'badge ' + status, text: status }); }
function pretty(v) { return JSON.stringify(v, null, 2); }

// ---------- the API ----------

class APIError extends Error {
  constructor(status, body) { super(body && body.message ? body.message : 'HTTP ' + status); this.status = status; this.code = body && body.code; }
}

async function api(path, options = {}) {
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch('/api' + path, { method: options.method || 'GET', headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body), signal: options.signal });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (res.status === 401) { askToken('The coordinator refused the token: ' + (body && body.message || 'wrong token')); throw new APIError(401, body); }
  if (!res.ok) throw new APIError(res.status, body);
  return body;
}

// Reads a text/event-stream through fetch; calls onEvent(kind, data). Reconnects after a pause
// when the stream ends, unless stopped. Returns { stop() }.
function stream(path, onEvent, { reconnect = true, onOpen, onEnd } = {}) {
  let stopped = false;
  let controller = null;
  async function once() {
    controller = new AbortController();
    const headers = token ? { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' } : { Accept: 'text/event-stream' };
    const res = await fetch('/api' + path, { headers, signal: controller.signal });
    if (res.status === 401) { askToken('The coordinator refused the token.'); stopped = true; return; }
    if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
    setLive(true);
    if (onOpen) onOpen();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let kind = 'message', data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) kind = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) { try { onEvent(kind, JSON.parse(data)); } catch (e) { console.error(e); } }
      }
    }
  }
  (async () => {
    while (!stopped) {
      try { await once(); } catch (e) { if (stopped) break; setLive(false); }
      if (!reconnect || stopped) break;
      await new Promise(r => setTimeout(r, 1000));
    }
    if (!stopped && onEnd) onEnd();
  })();
  return { stop() { stopped = true; if (controller) controller.abort(); } };
}

function setLive(on) {
  const el = $('#live');
  el.className = 'live ' + (on ? 'on' : 'off');
  el.textContent = on ? 'live' : 'reconnecting…';
}

// ---------- the token ----------

function askToken(message) {
  if (view) { view.stop(); view = null; }
  $('#signout').hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const note = h('p', { class: 'error', role: 'alert', text: message || '' });
  const form = h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    token = input.value.trim();
    try {
      await api('/stats');
      localStorage.setItem('cairn.token', token);
      route();
    } catch (err) { if (err.status !== 401) note.textContent = err.message; }
  } },
  h('h1', { text: 'Cairn' }),
  h('p', { class: 'muted', text: "The coordinator's token (the one its --token-file holds). It is kept in this browser only." }),
  h('label', { for: 'token' }, 'Token', input), note, h('button', { type: 'submit', text: 'Open the dashboard' }));
  main().replaceChildren(form);
  input.focus();
}

// ---------- runs ----------

function runsView(params) {
  const status = params.get('status') || '';
  const graph = params.get('graph') || '';
  const cursor = params.get('cursor') || '';
  const back = params.get('back') ? params.get('back').split(',') : [];
  const rows = new Map();
  const tbody = h('tbody');
  const info = h('span', { class: 'muted' });
  const older = h('button', { type: 'button', class: 'quiet', disabled: true, text: 'Older →' });
  const newer = h('button', { type: 'button', class: 'quiet', disabled: !cursor, text: '← Newer' });
  let nextCursor = null;
  let timer = null;

  function go(p) {
    const q = new URLSearchParams();
    if (p.status) q.set('status', p.status);
    if (p.graph) q.set('graph', p.graph);
    if (p.cursor) q.set('cursor', p.cursor);
    if (p.back && p.back.length) q.set('back', p.back.join(','));
    location.hash = '#/runs' + (q.toString() ? '?' + q : '');
  }
  const statusSelect = h('select', { id: 'f-status', onchange: () => go({ status: statusSelect.value, graph: graphInput.value.trim() }) },
    ['', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled'].map(s => h('option', { value: s, selected: s === status, text: s || 'any' })));
  const graphInput = h('input', { id: 'f-graph', type: 'search', value: graph, placeholder: 'any graph' });
  const filterForm = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); go({ status: statusSelect.value, graph: graphInput.value.trim() }); } },
    h('label', { for: 'f-status' }, 'Status', statusSelect), h('label', { for: 'f-graph' }, 'Graph', graphInput), h('button', { type: 'submit', text: 'Filter' }));
  older.addEventListener('click', () => go({ status, graph, cursor: nextCursor, back: [...back, cursor || '-'] }));
  newer.addEventListener('click', () => { const b = back.slice(); const prev = b.pop(); go({ status, graph, cursor: prev === '-' ? '' : prev, back: b }); });

  function row(r) {
    return h('tr', { 'data-run': r.run_id },
      h('td', {}, h('a', { href: '#/run/' + encodeURIComponent(r.run_id), class: 'mono', text: r.run_id })),
      h('td', {}, badge(r.status)),
      h('td', { text: r.graph + (r.graph_version > 1 ? ' v' + r.graph_version : '') }),
      h('td', { class: 'num', text: r.step }),
      h('td', { class: 'num', 'data-duration': true, text: fmtDuration(runDuration(r)) }),
      h('td', { class: 'num', text: fmtCost(r.cost) }),
      h('td', { text: fmtTime(r.created_at) }));
  }
  function put(r, atTop) {
    const old = rows.get(r.run_id);
    rows.set(r.run_id, r);
    const el = row(r);
    if (old) { const tr = tbody.querySelector(`tr[data-run="${CSS.escape(r.run_id)}"]`); if (tr) tr.replaceWith(el); }
    else if (atTop) { tbody.prepend(el); }
    else tbody.append(el);
  }
  function matches(r) { return (!status || r.status === status) && (!graph || r.graph === graph); }

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (status) q.set('status', status);
    if (graph) q.set('graph', graph);
    if (cursor) q.set('cursor', cursor);
    const started = performance.now();
    try {
      const list = await api('/runs?' + q);
      tbody.replaceChildren();
      rows.clear();
      list.runs.forEach(r => put(r, false));
      nextCursor = list.next_cursor;
      older.disabled = !nextCursor;
      info.textContent = list.runs.length ? `${list.runs.length} run(s) · ${Math.round(performance.now() - started)} ms` : 'no runs match';
    } catch (e) { info.textContent = e.message; }
  }
  const events = stream('/events', (kind, e) => {
    if (!e.run || !e.run.run_id) return;
    if (rows.has(e.run.run_id)) put(e.run);
    else if (!cursor && matches(e.run) && (kind === 'started' || kind === 'running' || kind === 'snapshot' || kind === 'paused' || kind === 'finished')) {
      put(e.run, true);
      while (tbody.children.length > PAGE) { const last = tbody.lastElementChild; rows.delete(last.dataset.run); last.remove(); }
    }
  }, { onOpen: load });
  timer = setInterval(() => {
    for (const tr of tbody.children) {
      const r = rows.get(tr.dataset.run);
      if (r && (r.status === 'running' || r.status === 'queued')) tr.querySelector('[data-duration]').textContent = fmtDuration(runDuration(r));
    }
  }, 1000);

  main().replaceChildren(h('h1', { text: 'Runs' }), filterForm,
    h('table', { 'aria-label': 'Runs' }, h('thead', {}, h('tr', {},
      ['Run', 'Status', 'Graph', 'Step', 'Duration', 'Cost', 'Started'].map((c, i) => h('th', { scope: 'col', class: [3, 4, 5].includes(i) ? 'num' : null, text: c })))), tbody),
    h('div', { class: 'pager' }, newer, older, info));
  return { stop() { events.stop(); clearInterval(timer); } };
}

// ---------- one run ----------

// What each node is doing, from the run's attempts and where it stands.
function nodeStates(run, attempts, live) {
  const s = {};
  const last = {};
  for (const a of attempts) {
    if (!last[a.node] || a.step > last[a.node].step || (a.step === last[a.node].step && a.attempt >= last[a.node].attempt)) last[a.node] = a;
  }
  for (const [node, a] of Object.entries(last)) s[node] = a.status === 'completed' ? 'done' : (a.status === 'failed' || a.status === 'timed_out' ? 'failed' : 'done');
  const pending = (run.interrupt && run.interrupt.pending) || [];
  for (const n of run.next || []) {
    if (run.status === 'paused') s[n] = pending.some(p => p.node === n) ? 'interrupted' : 'waiting';
    else if (run.status === 'running' || run.status === 'queued') s[n] = 'waiting';
    else if (run.status === 'failed' && s[n] !== 'done') s[n] = 'failed';
  }
  for (const p of pending) s[p.node] = 'interrupted';
  for (const [n, st] of Object.entries(live)) s[n] = st;
  if (run.status === 'completed') s.END = 'done';
  if (attempts.length || run.step > 0) s.START = 'done';
  return s;
}

// A readable layered picture when the coordinator has no Graphviz: ranks by distance from START.
function fallbackPicture(g) {
  const out = {};
  for (const e of g.edges) (out[e.from] = out[e.from] || []).push(e.to);
  const rank = { START: 0 };
  const queue = ['START'];
  while (queue.length) {
    const n = queue.shift();
    for (const t of out[n] || []) if (rank[t] === undefined) { rank[t] = rank[n] + 1; queue.push(t); }
  }
  let maxRank = Math.max(0, ...Object.values(rank));
  for (const n of g.nodes) if (rank[n.name] === undefined && n.name !== 'END') rank[n.name] = ++maxRank;
  rank.END = Math.max(...g.nodes.filter(n => n.name !== 'END').map(n => rank[n.name])) + 1;
  const rows = [];
  for (const n of g.nodes) (rows[rank[n.name]] = rows[rank[n.name]] || []).push(n);
  const W = 150, H = 44, GX = 30, GY = 46;
  const widest = Math.max(...rows.map(r => (r || []).length));
  const width = widest * (W + GX) + GX;
  const pos = {};
  rows.forEach((r, i) => (r || []).forEach((n, j) => {
    const x = (width - r.length * (W + GX) + GX) / 2 + j * (W + GX);
    pos[n.name] = { x, y: GY / 2 + i * (H + GY) };
  }));
  const height = rows.length * (H + GY);
  const svg = h('svg', { svg: true, viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'graph ' + g.name });
  const defs = h('defs', { svg: true }, h('marker', { svg: true, id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    h('path', { svg: true, d: 'M 0 0 L 10 5 L 0 10 z', fill: '#78848f' })));
  svg.append(defs);
  for (const e of g.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
    const d = y2 > y1 ? `M ${x1} ${y1} C ${x1} ${y1 + GY / 2}, ${x2} ${y2 - GY / 2}, ${x2} ${y2}`
      : `M ${a.x + W} ${a.y + H / 2} C ${a.x + W + 60} ${a.y}, ${b.x + W + 60} ${b.y + H}, ${b.x + W} ${b.y + H / 2}`;
    svg.append(h('path', { svg: true, d, class: 'edge-line' + (e.dashed ? ' dashed' : ''), 'marker-end': 'url(#arrow)' }));
    if (e.label) svg.append(h('text', { svg: true, x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2, 'font-size': 10, text: e.label }));
  }
  for (const n of g.nodes) {
    const p = pos[n.name];
    const group = h('g', { svg: true, class: 'node', 'data-node': n.name }, h('title', { svg: true, text: n.name }),
      h('rect', { svg: true, class: 'box', x: p.x, y: p.y, width: W, height: H, rx: n.kind === 'start' || n.kind === 'end' ? 22 : 6 }),
      h('text', { svg: true, x: p.x + W / 2, y: p.y + 18, 'text-anchor': 'middle', text: n.kind === 'start' ? 'start' : n.kind === 'end' ? 'end' : n.name }),
      n.kind === 'start' || n.kind === 'end' ? null : h('text', { svg: true, x: p.x + W / 2, y: p.y + 34, 'text-anchor': 'middle', 'font-size': 10, text: '(' + n.kind + ')' }));
    svg.append(group);
  }
  return svg;
}

function graphPicture(g) {
  if (g.svg) {
    const doc = new DOMParser().parseFromString(g.svg, 'image/svg+xml');
    const svg = doc.documentElement;
    if (svg && svg.nodeName === 'svg') {
      for (const s of svg.querySelectorAll('script, foreignObject')) s.remove();
      for (const node of svg.querySelectorAll('g.node')) {
        const t = node.querySelector('title');
        if (t) node.setAttribute('data-node', t.textContent);
      }
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', 'graph ' + g.name);
      svg.removeAttribute('width'); svg.removeAttribute('height');
      return document.importNode(svg, true);
    }
  }
  return fallbackPicture(g);
}

function diffState(before, after) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
  const changed = keys.filter(k => JSON.stringify((before || {})[k]) !== JSON.stringify((after || {})[k]));
  if (!changed.length) return h('p', { class: 'muted', text: 'No channel changed at this checkpoint.' });
  return h('table', { class: 'diff', 'aria-label': 'Changed channels' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Channel' }), h('th', { scope: 'col', text: 'Before' }), h('th', { scope: 'col', text: 'After' }))),
    h('tbody', {}, changed.map(k => h('tr', { 'data-channel': k }, h('td', { class: 'mono', text: k }),
      h('td', {}, h('del', {}, h('code', { text: k in (before || {}) ? JSON.stringify(before[k]) : '(unset)' }))),
      h('td', {}, h('ins', {}, h('code', { text: k in (after || {}) ? JSON.stringify(after[k]) : '(unset)' })))))));
}

function runView(runID) {
  let run = null, graph = null, attempts = [], history = [];
  let live = {};
  let selected = null;
  let followLatest = true; // the state view follows the newest checkpoint until one is picked
  let reloadTimer = null;
  const title = h('h1', {}, 'Run ', h('span', { class: 'mono', text: runID }));
  const facts = h('dl', { class: 'facts' });
  const actions = h('div', { class: 'actions' });
  const interrupts = h('section', { 'aria-label': 'Pending questions' });
  const failures = h('section', { 'aria-label': 'Errors' });
  const picture = h('div', { class: 'graph', id: 'graph' });
  const nodeList = h('ul', { class: 'nodes-list', id: 'node-states', 'aria-label': 'Node states' });
  const timeline = h('div', { id: 'timeline' });
  const cpList = h('ul', { class: 'cp-list', id: 'checkpoints', role: 'list' });
  const stateBox = h('div', { id: 'state' });
  const message = h('p', { role: 'status', class: 'muted' });

  function fact(name, value) { return h('div', {}, h('dt', { text: name }), h('dd', {}, value)); }
  function drawFacts() {
    facts.replaceChildren(fact('Status', badge(run.status)), fact('Graph', run.graph + ' v' + run.graph_version), fact('Step', String(run.step)),
      fact('Duration', fmtDuration(runDuration(run))), fact('Cost', fmtCost(run.cost)), fact('API calls', String(run.api_calls || 0)),
      fact('Tokens in / out', (run.tokens_in || 0) + ' / ' + (run.tokens_out || 0)), fact('Started', fmtTime(run.created_at)),
      fact('Durability', run.durability));
    actions.replaceChildren();
    if (['running', 'queued', 'paused'].includes(run.status)) {
      actions.append(h('button', { type: 'button', class: 'danger', id: 'cancel', onclick: async () => {
        if (!confirm('Cancel run ' + runID + '?')) return;
        try { await api('/runs/' + encodeURIComponent(runID) + '/cancel', { method: 'POST' }); message.textContent = 'cancel asked'; refresh(); }
        catch (e) { message.textContent = e.message; }
      } }, 'Cancel run'));
    }
    if (run.error) failures.replaceChildren(h('h2', { text: 'Error' }), h('pre', { class: 'error', text: run.error }));
  }
  function drawInterrupts() {
    const pending = run.status === 'paused' && run.interrupt ? run.interrupt.pending || [] : [];
    interrupts.replaceChildren(...pending.map((p, i) => {
      const field = h('textarea', { id: 'answer-' + i, 'aria-describedby': 'answer-help-' + i, text: '' });
      const note = h('p', { class: 'error', role: 'alert' });
      return h('form', { class: 'interrupt', 'data-interrupt': p.id, onsubmit: async (e) => {
        e.preventDefault();
        let value;
        const text = field.value.trim();
        if (text) { try { value = JSON.parse(text); } catch (_) { value = text; } }
        try {
          await api('/runs/' + encodeURIComponent(runID) + '/resume', { method: 'POST', body: value === undefined ? { interrupt_id: p.id, by: 'dashboard' } : { value, interrupt_id: p.id, by: 'dashboard' } });
          message.textContent = 'answered ' + p.id;
          refresh();
        } catch (err) { note.textContent = err.message; }
      } },
      h('h2', {}, '⏸ Waiting for an answer at ', h('code', { text: p.node })),
      h('p', { class: 'muted', text: `${p.reason || 'interrupt'} · ${p.id}` + (p.deadline ? ' · deadline ' + fmtTime(p.deadline) + (p.on_timeout ? ', then ' + JSON.stringify(p.on_timeout) : '') : '') }),
      p.value !== undefined && p.value !== null ? h('pre', { class: 'payload', text: pretty(p.value) }) : null,
      h('label', { for: 'answer-' + i }, 'Answer (JSON, or plain text)', field),
      h('p', { id: 'answer-help-' + i, class: 'muted', text: 'It is given to the node as its resume value; leave it empty to just continue.' }),
      note, h('button', { type: 'submit', text: 'Answer and continue' }));
    }));
  }
  function drawGraph() {
    if (!graph) return;
    if (!picture.firstChild) picture.append(graphPicture(graph));
    const states = nodeStates(run, attempts, live);
    for (const g of picture.querySelectorAll('g.node')) {
      const name = g.getAttribute('data-node');
      for (const s of STATES) g.classList.remove('state-' + s);
      if (states[name]) g.classList.add('state-' + states[name]);
      g.setAttribute('data-state', states[name] || 'idle');
    }
    nodeList.replaceChildren(...graph.nodes.filter(n => n.kind !== 'start' && n.kind !== 'end')
      .map(n => h('li', { 'data-node': n.name }, h('code', { text: n.name }), ' ', badge(states[n.name] || 'idle'))));
  }
  function drawTimeline() {
    if (!attempts.length) { timeline.replaceChildren(h('p', { class: 'muted', text: 'No task has run yet.' })); return; }
    const t0 = Math.min(...attempts.map(a => a.queued_at || a.started_at));
    const t1 = Math.max(...attempts.map(a => a.finished_at || a.started_at));
    const span = Math.max(t1 - t0, 0.001);
    const rows = attempts.slice().sort((a, b) => a.started_at - b.started_at).map(a => {
      const bad = a.status !== 'completed';
      const retry = a.attempt > 1;
      const left = ((a.started_at - t0) / span) * 100;
      const width = Math.max(((a.finished_at - a.started_at) / span) * 100, 0.5);
      const bar = h('span', { class: bad ? 'failed' : (retry ? 'retry' : null) });
      bar.style.left = left + '%'; bar.style.width = width + '%';
      return h('tr', { class: bad ? 'failed' : (retry ? 'retry' : null), 'data-task': a.task_id, 'data-node': a.node },
        h('td', { class: 'num', text: a.step }), h('td', {}, h('code', { text: a.node })), h('td', { class: 'num', text: a.attempt }),
        h('td', { text: a.worker || '—' }), h('td', {}, badge(a.status === 'completed' ? 'done' : a.status)),
        h('td', { class: 'num', text: fmtDuration(a.duration_ms / 1000) }), h('td', { class: 'num', text: a.queue_ms === null ? '—' : fmtDuration(a.queue_ms / 1000) }),
        h('td', { class: 'num', text: fmtCost(a.cost) }), h('td', { class: 'bar-cell' }, h('div', { class: 'tl', title: fmtTime(a.started_at) }, bar)));
    });
    timeline.replaceChildren(h('table', { class: 'timeline', 'aria-label': 'Timeline' }, h('thead', {}, h('tr', {},
      ['Step', 'Node', 'Try', 'Worker', 'Outcome', 'Took', 'Queued', 'Cost', 'When'].map(c => h('th', { scope: 'col', text: c })))), h('tbody', {}, rows)));
    const failed = attempts.filter(a => a.status !== 'completed' && a.error);
    if (failed.length) {
      failures.replaceChildren(h('h2', { text: 'Task errors' }), ...failed.slice(-5).map(a => h('div', {},
        h('p', {}, h('code', { text: a.node }), ` step ${a.step}, attempt ${a.attempt}` + (a.error_kind ? ` (${a.error_kind})` : '') + (a.worker ? ' on ' + a.worker : '')),
        h('pre', { class: 'error', text: a.error }))));
      if (run.error) failures.append(h('h2', { text: 'Run error' }), h('pre', { class: 'error', text: run.error }));
    }
  }
  function drawHistory() {
    cpList.replaceChildren(...history.map((c, i) => h('li', {}, h('button', { type: 'button', 'aria-pressed': selected === c.checkpoint_id ? 'true' : 'false',
      'data-checkpoint': c.checkpoint_id, onclick: () => { followLatest = i === 0; showState(c, history[i + 1]); } },
    h('strong', { text: 'step ' + c.step }), ' · ' + c.source + (c.updated && c.updated.length ? ' · changed ' + c.updated.join(', ') : '') +
      (c.next && c.next.length ? ' · next ' + c.next.join(', ') : '') + (c.run_id !== runID ? ' · in ' + c.run_id : '')))));
  }
  async function showState(c, parent) {
    selected = c.checkpoint_id;
    drawHistory();
    try {
      const [now, before] = await Promise.all([api(`/runs/${encodeURIComponent(c.run_id)}/state?checkpoint=${encodeURIComponent(c.checkpoint_id)}`),
        parent ? api(`/runs/${encodeURIComponent(parent.run_id)}/state?checkpoint=${encodeURIComponent(parent.checkpoint_id)}`) : Promise.resolve({ state: {} })]);
      const fork = h('button', { type: 'button', class: 'quiet', id: 'fork', onclick: async () => {
        try {
          const r = await api('/runs/' + encodeURIComponent(runID) + '/fork', { method: 'POST', body: { checkpoint_id: c.checkpoint_id, by: 'dashboard' } });
          location.hash = '#/run/' + encodeURIComponent(r.run_id);
        } catch (e) { message.textContent = e.message; }
      } }, 'Fork from here');
      stateBox.replaceChildren(h('h2', {}, 'State at step ' + c.step + ' ', h('code', { class: 'muted', text: c.checkpoint_id })),
        h('div', { class: 'actions' }, fork), h('h3', { text: 'What changed' }), diffState(before.state, now.state),
        h('h3', { text: 'Whole state' }), h('pre', { class: 'state-json', text: pretty(now.state) }));
    } catch (e) { stateBox.replaceChildren(h('p', { class: 'error', text: e.message })); }
  }
  async function refresh() {
    try {
      const id = encodeURIComponent(runID);
      const [r, t, hist] = await Promise.all([api('/runs/' + id), api('/runs/' + id + '/tasks?limit=100000'), api('/runs/' + id + '/history')]);
      run = r; attempts = t.rows; history = hist.checkpoints;
      if (!graph) graph = await api('/runs/' + id + '/graph');
      live = {};
      drawFacts(); drawInterrupts(); drawGraph(); drawTimeline(); drawHistory();
      if (!selected && history.length) showState(history[0], history[1]);
      else if (selected && history.length && history[0].checkpoint_id !== selected && followLatest) showState(history[0], history[1]);
      if (['running', 'queued'].includes(run.status) && !events) watch();
    } catch (e) { message.textContent = e.message; }
  }
  function later() { clearTimeout(reloadTimer); reloadTimer = setTimeout(refresh, 150); }
  // The run's stream ends with its final event (a paused run's at once): it is watched again
  // when it runs again (after an answer, say).
  let events = null;
  function watch() {
    events = stream('/runs/' + encodeURIComponent(runID) + '/events', (kind, e) => {
      if (e.run) { run = e.run; drawFacts(); }
      if (kind === 'task_started' && e.node) { live[e.node] = 'running'; drawGraph(); }
      else if (kind === 'task_finished' && e.node) { live[e.node] = 'done'; drawGraph(); }
      else if (kind === 'task_failed' && e.node) { live[e.node] = 'failed'; drawGraph(); later(); }
      else if (kind === 'checkpoint' || e.final) later();
    }, { reconnect: false, onOpen: refresh, onEnd: () => { events = null; later(); } });
  }
  watch();

  main().replaceChildren(h('p', {}, h('a', { href: '#/runs', text: '← Runs' })), title, message, facts, actions, interrupts, failures,
    h('div', { class: 'cols' },
      h('section', { 'aria-labelledby': 'g-h' }, h('h2', { id: 'g-h', text: 'Graph' }),
        h('ul', { class: 'legend', 'aria-label': 'Legend' }, STATES.map(s => h('li', {}, badge(s)))), picture, nodeList),
      h('section', { 'aria-labelledby': 'c-h' }, h('h2', { id: 'c-h', text: 'Checkpoints' }), cpList, stateBox)),
    h('section', { 'aria-labelledby': 't-h' }, h('h2', { id: 't-h', text: 'Timeline' }), timeline));
  return { stop() { if (events) { const e = events; events = null; e.stop(); } clearTimeout(reloadTimer); } };
}

// ---------- workers ----------

function workersView() {
  const tbody = h('tbody');
  const info = h('p', { class: 'muted', role: 'status' });
  let workers = [];
  function draw() {
    const now = Date.now() / 1000;
    tbody.replaceChildren(...workers.map(w => h('tr', { 'data-worker': w.name },
      h('td', {}, h('strong', { text: w.name }), h('div', { class: 'muted mono', text: w.worker_id })),
      h('td', {}, badge(w.state === 'idle' || w.state === 'busy' ? (w.state === 'busy' ? 'running' : 'done') : 'failed'), ' ', w.state),
      h('td', { class: 'num', text: w.slots }), h('td', { class: 'num', text: w.running }),
      h('td', { class: 'num', 'data-age': true, text: fmtDuration(Math.max(0, now - w.last_heartbeat)) }),
      h('td', { class: 'num', text: w.tasks_done }), h('td', { text: (w.kinds || []).join(', ') }), h('td', { class: 'mono', text: w.address }))));
    info.textContent = `${workers.length} worker(s) connected · updated ${new Date().toLocaleTimeString()}`;
  }
  async function load() {
    try { workers = (await api('/workers')).workers; draw(); setLive(true); } catch (e) { info.textContent = e.message; setLive(false); }
  }
  load();
  const timer = setInterval(load, 1000);
  main().replaceChildren(h('h1', { text: 'Workers' }), info,
    h('table', { 'aria-label': 'Workers' }, h('thead', {}, h('tr', {},
      ['Worker', 'State', 'Slots', 'Running', 'Heartbeat age', 'Tasks done', 'Kinds', 'Address'].map((c, i) => h('th', { scope: 'col', class: [2, 3, 4, 5].includes(i) ? 'num' : null, text: c })))), tbody));
  return { stop() { clearInterval(timer); } };
}

// ---------- routing ----------

function route() {
  if (view) { view.stop(); view = null; }
  if (!token && !open) { askToken(''); return; }
  $('#signout').hidden = open;
  const hash = location.hash || '#/runs';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const section = path.startsWith('/workers') ? 'workers' : 'runs';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (path.startsWith('/run/')) view = runView(decodeURIComponent(path.slice(5)));
  else if (section === 'workers') view = workersView();
  else view = runsView(params);
  document.title = 'Cairn · ' + (path.startsWith('/run/') ? decodeURIComponent(path.slice(5)) : section);
}

document.addEventListener('DOMContentLoaded', () => {
  $('#signout').addEventListener('click', () => { localStorage.removeItem('cairn.token'); token = ''; askToken(''); });
  window.addEventListener('hashchange', route);
  if (token) { route(); return; }
  // A coordinator started without a token answers without one: no need to ask.
  fetch('/api/stats').then(r => { open = r.ok; route(); }, () => route());
});

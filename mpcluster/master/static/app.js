// The mpcluster status page: polls /api/status every second and shows it. No library, nothing from elsewhere.
//
// Honest by construction:
// - Ages and countdowns are the master's own numbers (seconds on its clock) plus the time this page has waited
//   since that answer (performance.now()); two machines' clocks are never compared.
// - A worker that went silent keeps its row: its last heartbeat keeps ageing and the countdown says when the
//   master will call it gone (after one lease); gone and left workers stay listed with what they did.
// - If the master stops answering, the page says so and for how long, and greys out what it last heard.
// - Text that comes from workers is set with textContent only.
'use strict';

(() => {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000; // a tab in the background asks less often
  const TIMEOUT_MS = 4000;
  const TICK_MS = 1000; // ages and countdowns move once a second, with each answer (a redraw costs CPU)
  const STALE_S = 3; // no answer for this long: say so
  const SVG = 'http://www.w3.org/2000/svg';

  let st = null; // the last status the master gave
  let at = 0; // performance.now() when it arrived
  let failure = ''; // why the last poll failed, or ''
  let failedAt = 0; // performance.now() of the first failure in a row
  let firstStarted = null; // master.started when this page first heard from it
  let timer = 0;
  let ticked = 0; // performance.now() of the last redraw

  const $ = (sel) => document.querySelector(sel);
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const since = () => (performance.now() - at) / 1000;

  function put(node, text) { // only real changes: an unchanged text costs no layout
    if (node.textContent !== text) node.textContent = text;
  }

  function setState(node, state) {
    if (node.dataset.state !== state) node.dataset.state = state;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function secs(s) {
    s = Math.max(0, num(s));
    if (s < 60) return s.toFixed(1) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function clock(epoch) {
    if (typeof epoch !== 'number') return '—';
    return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
  }

  // ---- workers ----

  function spark(history, peak, sample) {
    const n = 60, w = 120, h = 22, bar = w / n;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', w);
    svg.setAttribute('height', h);
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('role', 'img');
    const base = document.createElementNS(SVG, 'rect'); // the axis: an empty chart still reads as one
    base.setAttribute('class', 'axis');
    base.setAttribute('x', 0);
    base.setAttribute('y', h - 1);
    base.setAttribute('width', w);
    base.setAttribute('height', 1);
    svg.append(base);
    const recent = history.slice(-n);
    recent.forEach((v, i) => {
      const height = peak > 0 && v > 0 ? Math.max(1, Math.round((v / peak) * h)) : 0;
      if (!height) return;
      const r = document.createElementNS(SVG, 'rect');
      r.setAttribute('x', (w - (recent.length - i) * bar).toFixed(1));
      r.setAttribute('y', h - height);
      r.setAttribute('width', Math.max(1, bar - 0.5).toFixed(1));
      r.setAttribute('height', height);
      svg.append(r);
    });
    const total = recent.reduce((a, b) => a + num(b), 0);
    const last = recent.length ? num(recent[recent.length - 1]) : 0;
    const label = `${total} done in the last ${secs(recent.length * sample)}; latest ${(last / sample).toFixed(1)}/s`;
    const title = document.createElementNS(SVG, 'title');
    title.textContent = label;
    svg.append(title);
    svg.setAttribute('aria-label', label);
    return svg;
  }

  function workerRow(w, lease) {
    const tr = el('tr');
    tr.dataset.worker = w.id;
    tr.dataset.state = w.state;
    tr.append(el('td', 'id', w.id), el('td', 'ip', w.ip || '—'));
    const state = el('td', 'state');
    state.append(el('span', `state-label state-${w.state}`, w.state));
    if (num(w.restarts) > 0 && (w.state === 'alive' || w.state === 'stopping')) {
      const b = el('span', 'badge restarted', num(w.restarts) > 1 ? `restarted ×${w.restarts}` : 'restarted');
      b.title = 'a new worker process appeared under this id: what the old one held was queued again';
      state.append(' ', b);
    }
    tr.append(state);
    const age = el('td', 'age');
    age.dataset.base = num(w.last_heartbeat_s);
    const gone = el('td', 'gone-in');
    if (typeof w.gone_in_s === 'number') {
      gone.dataset.base = w.gone_in_s;
      gone.append(el('span', 'countdown'));
      const m = el('meter');
      m.min = 0;
      m.max = lease || 1;
      m.low = (lease || 1) * 0.5;
      m.optimum = lease || 1;
      gone.append(' ', m);
    } else {
      gone.textContent = '—';
    }
    tr.append(age, gone);
    for (const k of ['leased', 'done', 'errors', 'duplicates']) tr.append(el('td', `num ${k}`));
    tr.append(el('td', 'python', w.python || '—'));
    const par = el('td', 'parallel', `${num(w.threads) || 1} / ${num(w.processes)}`);
    if (Array.isArray(w.kinds) && w.kinds.length) par.title = 'kinds: ' + w.kinds.join(', ');
    tr.append(par, el('td', 'chart'));
    return tr;
  }

  // What changes while a row stays: counters, ages, the chart (a new sample every 5 s).
  function fillWorker(tr, w, peak, sample) {
    tr.querySelector('.age').dataset.base = num(w.last_heartbeat_s);
    const gone = tr.querySelector('.gone-in');
    if (typeof w.gone_in_s === 'number') gone.dataset.base = w.gone_in_s;
    for (const k of ['leased', 'done', 'errors', 'duplicates']) put(tr.querySelector(`.${k}`), String(num(w[k])));
    const history = Array.isArray(w.history) ? w.history.map(num) : [];
    const chart = tr.querySelector('.chart');
    const key = JSON.stringify([history, peak, sample]);
    if (chart.dataset.key !== key) {
      chart.dataset.key = key;
      chart.replaceChildren(spark(history, peak, sample));
    }
  }

  // Rows are replaced only when what they show changed, and an unchanged table is not touched at all: each DOM
  // change costs the browser a layout and a paint, and it may share the CPU with the cluster it shows.
  function sync(tbody, items, key, make, sig, fill) {
    const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    const rows = items.map((item) => {
      const s = sig(item);
      let tr = old.get(key(item));
      if (!tr || tr.dataset.sig !== s) {
        tr = make(item);
        tr.dataset.key = key(item);
        tr.dataset.sig = s;
      }
      fill(tr, item);
      return [tr, item];
    });
    const want = rows.map(([tr]) => tr);
    const have = [...tbody.children];
    if (want.length === have.length && want.every((tr, i) => tr.dataset.key === have[i].dataset.key)) {
      want.forEach((tr, i) => { if (tr !== have[i]) have[i].replaceWith(tr); }); // same rows: swap the changed
    } else {
      tbody.replaceChildren(...want);
    }
    return rows;
  }

  function renderWorkers(s) {
    const workers = Array.isArray(s.workers) ? s.workers : [];
    const sample = num(s.master && s.master.sample_seconds) || 5;
    const lease = num(s.master && s.master.lease_seconds);
    const peak = Math.max(0, ...workers.flatMap((w) => (Array.isArray(w.history) ? w.history.map(num) : [])));
    sync($('#workers tbody'), workers, (w) => w.id, (w) => workerRow(w, lease),
      (w) => JSON.stringify([w.ip, w.state, num(w.restarts), w.python, w.threads, w.processes, w.kinds,
        typeof w.gone_in_s === 'number', lease]),
      (tr, w) => fillWorker(tr, w, peak, sample));
    $('#no-workers').hidden = workers.length > 0;
  }

  // ---- jobs ----

  function jobRow(j) {
    const tr = el('tr');
    tr.dataset.job = j.job;
    tr.dataset.state = j.state;
    const id = el('td', 'job', j.job);
    if (num(j.master_restarts) > 0) {
      const b = el('span', 'badge restored', 'restored');
      b.title = `this job lived through ${j.master_restarts} master restart(s): its results came back from the journal`;
      id.append(' ', b);
    }
    tr.append(id, el('td', 'kind', j.kind || '—'));
    const state = el('td', 'state');
    state.append(el('span', `state-label state-${j.state}`, j.state || '—'));
    tr.append(state);
    const prog = el('td', 'progress');
    const bar = el('progress');
    bar.max = Math.max(1, num(j.tasks));
    prog.append(bar, ' ', el('span', 'count'), ' ', el('span', 'pct'));
    tr.append(prog, el('td', 'num rate'), el('td', 'num eta'));
    for (const k of ['redeliveries', 'duplicates_dropped', 'handed_back', 'errors']) tr.append(el('td', `num ${k}`));
    tr.append(el('td', 'by-worker'));
    return tr;
  }

  // What changes while a job runs: its progress, rate, ETA, counters and who gave how many results.
  function fillJob(tr, j) {
    const tasks = num(j.tasks), done = num(j.done);
    const bar = tr.querySelector('progress');
    if (bar.value !== done) {
      bar.value = done;
      bar.setAttribute('aria-label', `${done} of ${tasks} results`);
    }
    const pct = tasks ? Math.floor((done * 100) / tasks) : 0; // 100% only when every result is in
    put(tr.querySelector('.count'), `${done}/${tasks}`);
    put(tr.querySelector('.pct'), `${pct}%`);
    put(tr.querySelector('.rate'), num(j.rate) > 0 ? `${num(j.rate).toFixed(1)}/s` : '—');
    put(tr.querySelector('.eta'), typeof j.eta_s === 'number' ? secs(j.eta_s)
      : (j.state === 'running' ? '—' : `took ${secs(j.seconds)}`));
    for (const k of ['redeliveries', 'duplicates_dropped', 'handed_back', 'errors']) {
      put(tr.querySelector(`.${k}`), String(num(j[k])));
    }
    const per = Object.entries(j.workers && typeof j.workers === 'object' ? j.workers : {})
      .sort(([a], [b]) => (a < b ? -1 : 1)).map(([w, n]) => `${w} ${n}`);
    const by = tr.querySelector('.by-worker');
    const key = JSON.stringify(per);
    if (by.dataset.key !== key) {
      by.dataset.key = key;
      by.replaceChildren(...per.flatMap((text, i) => [...(i ? [' '] : []), el('span', 'chip', text)]));
      if (!per.length) by.textContent = '—';
    }
  }

  function renderJobs(s) {
    const jobs = (Array.isArray(s.jobs) ? s.jobs : []).slice().reverse(); // newest first
    sync($('#jobs tbody'), jobs, (j) => j.job, jobRow,
      (j) => JSON.stringify([j.kind, j.state, num(j.master_restarts) > 0, j.tasks]), fillJob);
    $('#no-jobs').hidden = jobs.length > 0;
  }

  // ---- events, master, totals ----

  const KINDS = [[/restored/, 'restore'], [/restarted/, 'restart'], [/joined|is back/, 'join'], [/ gone/, 'gone'],
    [/expired/, 'expire'], [/duplicate/, 'dup'], [/ left/, 'left']];

  function renderEvents(s) {
    const events = Array.isArray(s.events) ? s.events : [];
    const ol = $('#events');
    const key = events.length + ':' + JSON.stringify(events[events.length - 1] || null);
    if (ol.dataset.key === key) return;
    ol.dataset.key = key;
    ol.replaceChildren(...events.slice().reverse().map((e) => {
      const text = String(e.text ?? '');
      const li = el('li', 'ev-' + ((KINDS.find(([rx]) => rx.test(text)) || [null, 'other'])[1]));
      li.append(el('time', null, clock(e.t)), ' ', el('span', 'text', text));
      return li;
    }));
    if (!events.length) ol.append(el('li', 'empty', 'nothing yet'));
  }

  function renderMaster(s) {
    const m = s.master || {};
    if (firstStarted === null) firstStarted = m.started;
    const banner = $('#restarted');
    if (num(m.restarts) > 0) {
      put(banner, `The master restarted: this is its start number ${num(m.restarts) + 1}, up since `
        + `${clock(m.started)}. Jobs and their counts came back from the journal; worker counters start again `
        + 'from that moment, as workers reconnect.');
    } else if (m.started !== firstStarted) {
      put(banner, `The master restarted at ${clock(m.started)} without a journal: earlier jobs are gone.`);
    }
    banner.hidden = !(num(m.restarts) > 0 || m.started !== firstStarted);
    const q = s.queues || {}, c = s.classic || {};
    const workers = Array.isArray(s.workers) ? s.workers : [];
    let totals = `${num(s.alive)} of ${workers.length} workers alive · ${num(q.pending)} tasks pending · `
      + `${num(q.leased)} leased`;
    if (num(q.classic_tasks) || num(q.classic_results) || num(c.done)) {
      totals += ` · the lesson's queues: ${num(q.classic_tasks)} tasks and ${num(q.classic_results)} results `
        + `waiting, ${num(c.done)} done (${num(c.redeliveries)} redelivered, `
        + `${num(c.duplicates_dropped)} duplicates dropped)`;
    }
    put($('#totals'), totals);
  }

  function render() {
    renderMaster(st);
    renderWorkers(st);
    renderJobs(st);
    renderEvents(st);
  }

  // ---- what moves between answers ----

  function tick() {
    ticked = performance.now();
    const conn = $('#conn');
    const down = failure && (!st || (performance.now() - failedAt) / 1000 >= STALE_S || since() >= STALE_S);
    if (!st && !failure) {
      setState(conn, 'connecting');
    } else if (down) {
      setState(conn, 'stale');
      put(conn, st
        ? `no answer from the master for ${secs((performance.now() - failedAt) / 1000)} (${failure}): `
          + `showing what it said ${secs(since())} ago`
        : `no answer from the master (${failure})`);
    } else {
      setState(conn, 'live');
      put(conn, `live · updated ${since().toFixed(1)} s ago`);
    }
    document.body.classList.toggle('stale', Boolean(down && st));
    if (!st) return;
    const m = st.master || {};
    put($('#master'), `master: Python ${m.python || '?'} · mpcluster ${m.version || '?'} · up `
      + `${secs(num(m.uptime_s) + since())} · lease ${num(m.lease_seconds)} s · heartbeat `
      + `${num(m.heartbeat_seconds)} s · journal ${m.journal ? 'on' : 'off (a restart forgets the jobs)'}`);
    const waited = since();
    for (const td of document.querySelectorAll('#workers td.age')) {
      put(td, `${secs(num(Number(td.dataset.base)) + waited)} ago`);
    }
    for (const td of document.querySelectorAll('#workers td.gone-in[data-base]')) {
      const left = Math.max(0, num(Number(td.dataset.base)) - waited);
      put(td.querySelector('.countdown'), left > 0 ? `in ${secs(left)}` : 'due');
      const meter = td.querySelector('meter');
      const value = Math.round(left * 10) / 10;
      if (meter.value !== value) meter.value = value;
    }
  }

  async function poll() {
    const ctl = new AbortController();
    const stop = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch('/api/status', { cache: 'no-store', signal: ctl.signal });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const data = await r.json();
      st = data;
      at = performance.now();
      failure = '';
      render();
    } catch (e) {
      if (!failure) failedAt = performance.now();
      failure = e && e.name === 'AbortError' ? 'timed out' : String((e && e.message) || e);
      if (e && !(e instanceof TypeError) && e.name !== 'AbortError') console.error(e);
    } finally {
      clearTimeout(stop);
      tick();
      schedule(document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(0); });
  // Each answer redraws (poll -> tick); this only fills the gaps when answers are slow or missing.
  setInterval(() => { if (performance.now() - ticked >= TICK_MS) tick(); }, TICK_MS / 4);
  poll();
})();

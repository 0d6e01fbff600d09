// happen web view. The stream (/api/stream) brings one summary per engine
// tick: health, totals, groups, incidents, new events and rules. The node
// table is virtual: it holds only the rows in view, fetched from
// /api/nodes on each summary and on scrolling, with spacer rows standing
// for the rest, so 10,000 nodes cost what 40 do.
'use strict';

(() => {
  const ROW = 30;          // px; must match #nodes tbody tr.node in style.css
  const OVERSCAN = 8;      // rows fetched beyond each edge of the view
  const MAX_EVENTS = 50;   // as the server's RecentEventsShown
  const COLS = 12;

  const $ = (id) => document.getElementById(id);
  const scroller = $('scroller');
  const tbody = $('rows');
  const thead = document.querySelector('#nodes thead');

  const state = {
    group: null,     // null: every group; a string (maybe ""): that group only
    q: '',
    sort: 'trouble',
    summary: null,
    events: [],
    seen: new Set(), // event ids shown, to mark new arrivals
    total: 0,
    fetching: false,
    again: false,
  };

  // ---- formatting ----

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => (
    { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const int = (n) => Math.round(n).toLocaleString('en-US');
  function rate(r) {
    const a = Math.abs(r);
    if (a < 0.005) return '0';
    if (a >= 1000) return int(r);
    if (a >= 100) return r.toFixed(0);
    if (a >= 10) return r.toFixed(1);
    return r.toFixed(2);
  }
  const trim = (x) => x.replace(/\.0$/, '');
  function secs(s) {
    if (s >= 3600) return trim((s / 3600).toFixed(1)) + 'h';
    if (s >= 60) return trim((s / 60).toFixed(1)) + 'm';
    if (s >= 10) return s.toFixed(0) + 's';
    if (s >= 1 || s === 0) return trim(s.toFixed(1)) + 's';
    return Math.round(s * 1000) + 'ms';
  }
  function age(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    const m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + (s % 60) + 's';
    return Math.floor(m / 60) + 'h ' + (m % 60) + 'm';
  }
  const pad = (n) => String(n).padStart(2, '0');
  const clock = (d) => pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  const validTime = (iso) => iso && !iso.startsWith('0001-');
  const groupName = (g) => (g === '' ? '(no group)' : g);

  // ---- theme ----

  const themeBtn = $('theme');
  const dark = window.matchMedia('(prefers-color-scheme: dark)');
  const theme = () => document.documentElement.dataset.theme || (dark.matches ? 'dark' : 'light');
  function showTheme() {
    const other = theme() === 'dark' ? 'light' : 'dark';
    themeBtn.textContent = other === 'dark' ? 'Dark theme' : 'Light theme';
    themeBtn.setAttribute('aria-label', 'Switch to the ' + other + ' theme');
  }
  themeBtn.addEventListener('click', () => {
    const t = theme() === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = t;
    try { localStorage.setItem('happen-theme', t); } catch (e) { /* not remembered */ }
    showTheme();
  });
  dark.addEventListener('change', showTheme);
  showTheme();

  // ---- header ----

  function renderHeader(s) {
    const h = $('health');
    if (s.healthy) {
      h.className = 'badge healthy';
      h.textContent = 'healthy';
    } else {
      h.className = 'badge ' + (s.blind ? 'blind' : 'unhealthy');
      h.textContent = (s.blind ? 'blind: ' : 'unhealthy: ') + (s.reason || 'no reason given');
    }
    $('sampled').textContent = (validTime(s.at) ? 'sampled ' + clock(new Date(s.at)) : 'no sample yet') +
      ' · every ' + secs(s.interval) +
      (s.leader ? ' · ' + s.role + (s.role === 'leader' ? '' : ' (leader ' + s.leader + ')') : '') +
      (s.members > 1 ? ' · streams shared by ' + s.members + ' engines' : '');
    const t = s.totals;
    const items = [
      ['nodes', int(t.nodes), ''],
      ['down', int(t.down), t.down ? 't-down' : ''],
      ['stalled', int(t.stalled), t.stalled ? 't-stalled' : ''],
      ['behind', int(t.behind), t.behind ? 't-behind' : ''],
      ['idle', int(t.idle), ''],
      ['waiting', int(t.messagesWaiting), ''],
      ['published/s', rate(s.publishRate), ''],
      ['acked/s', rate(t.ackRate), ''],
    ];
    if (s.unobserved) items.splice(5, 0, ['unread', int(s.unobserved), 't-behind']);
    $('totals').innerHTML = items.map(([k, v, c]) =>
      `<div class="${c}"><dt>${k}</dt><dd>${v}</dd></div>`).join('');
    document.title = t.down ? `(${t.down} down) happen` : 'happen';
  }

  // ---- incidents ----

  function renderIncidents(s) {
    const table = $('incidents');
    $('incident-count').textContent = s.incidentCount ?
      (s.incidentCount > s.incidents.length ? `${s.incidentCount} open, newest ${s.incidents.length} shown` : `${s.incidentCount} open`) : '';
    $('no-incidents').hidden = s.incidentCount > 0;
    table.hidden = s.incidentCount === 0;
    const at = validTime(s.at) ? Date.parse(s.at) : Date.now();
    table.tBodies[0].innerHTML = s.incidents.map((i) => {
      let nodes = i.nodes.map(esc).join(', ');
      if (i.nodeCount > i.nodes.length) nodes += ` <span class="muted">and ${int(i.nodeCount - i.nodes.length)} more</span>`;
      if (i.nodeCount === 0) nodes = '<span class="muted">system</span>';
      return `<tr><td><span class="pattern">${esc(i.pattern)}</span></td>` +
        `<td><span class="level level-${esc(i.level)}">${esc(i.level)}</span></td>` +
        `<td>${esc(i.rule)}</td><td class="inodes" title="${esc(i.nodes.join(', '))}">${nodes}</td>` +
        `<td class="num">${age(at - Date.parse(i.since))}</td></tr>`;
    }).join('');
  }

  // ---- groups ----

  const groupList = $('groups');
  const groupFilter = $('group-filter');

  function countsHTML(c) {
    let h = '';
    if (c.down) h += `<span class="state s-down">${int(c.down)} down</span>`;
    if (c.stalled) h += `<span class="state s-stalled">${int(c.stalled)} stalled</span>`;
    if (c.behind) h += `<span class="state s-behind">${int(c.behind)} behind</span>`;
    if (c.idle) h += `<span class="state s-idle">${int(c.idle)} idle</span>`;
    if (!h) h = `<span class="state s-ok">all ok</span>`;
    return h + `<span class="glag" title="messages waiting">${int(c.messagesWaiting)} waiting</span>`;
  }

  function groupButton(key, name, c, pressed) {
    const flow = `acks ${rate(c.ackRate)}/s, deliveries ${rate(c.deliveryRate)}/s` +
      (c.arrivalRate !== undefined ? `, new work ${rate(c.arrivalRate)}/s` : '');
    return `<li><button type="button" data-key="${esc(key)}" aria-pressed="${pressed}" title="${flow}">` +
      `<span class="gname">${esc(name)}</span><span class="gsize">${int(c.nodes)} nodes</span>` +
      `<span class="gcounts">${countsHTML(c)}</span></button></li>`;
  }

  function renderGroups() {
    const s = state.summary;
    if (!s) return;
    const focused = document.activeElement && groupList.contains(document.activeElement) ?
      document.activeElement.dataset.key : undefined;
    const f = groupFilter.value.trim().toLowerCase();
    let html = f ? '' : groupButton('all', 'All groups', s.totals, state.group === null);
    for (const g of s.groups) {
      if (f && !groupName(g.name).toLowerCase().includes(f)) continue;
      html += groupButton('g:' + g.name, groupName(g.name), g, state.group === g.name);
    }
    groupList.innerHTML = html;
    $('group-count').textContent = s.groups.length ? String(s.groups.length) : '';
    if (focused !== undefined) {
      for (const b of groupList.querySelectorAll('button')) {
        if (b.dataset.key === focused) { b.focus(); break; }
      }
    }
  }

  groupList.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    const k = b.dataset.key;
    state.group = k === 'all' ? null : k.slice(2);
    $('nodes-scope').textContent = state.group === null ? 'in all groups' : 'in ' + groupName(state.group);
    renderGroups();
    scroller.scrollTop = 0;
    refreshRows();
  });
  groupFilter.addEventListener('input', renderGroups);

  // ---- nodes ----

  function spark(pts, axis, max) {
    if (!pts || pts.length === 0) return '';
    const W = 100, H = 22;
    const n = Math.max(axis, pts.length, 2);
    const off = n - pts.length;
    // A floor on the scale keeps a node that waits on a message or two
    // from drawing its noise as peaks.
    const k = (H - 3) / Math.max(max, 10);
    const segs = [];
    let cur = [];
    pts.forEach((v, i) => {
      if (v === null) {
        if (cur.length) segs.push(cur);
        cur = [];
        return;
      }
      cur.push([((off + i) / (n - 1)) * W, H - 1.5 - v * k]);
    });
    if (cur.length) segs.push(cur);
    const xy = (p) => p[0].toFixed(1) + ',' + p[1].toFixed(1);
    let out = '';
    for (const s of segs) {
      if (s.length === 1) s.push([s[0][0] + 0.8, s[0][1]]);
      const line = s.map(xy).join(' ');
      out += `<polygon points="${xy([s[0][0], H])} ${line} ${xy([s[s.length - 1][0], H])}"/>`;
      out += `<polyline points="${line}" vector-effect="non-scaling-stroke"/>`;
    }
    return out;
  }

  function rowHTML(n, i, page) {
    const label = n.state === 'down' && n.pattern ? `down · ${n.pattern}` : n.state;
    let max = 0;
    for (const v of n.points) if (v !== null && v > max) max = v;
    const span = page.history.step * Math.max(page.history.points - 1, 1);
    const sparkTitle = `messages waiting over the last ${secs(span)}: peak ${int(max)}`;
    const cadence = n.cadenceLearned ? secs(n.ackCadence) : '<span class="prior" title="not learned yet">learning</span>';
    const stall = secs(n.stallThreshold) + (n.cadenceLearned ? '' : ' <span class="prior" title="a cautious prior until the cadence is learned">prior</span>');
    const lag = n.messagesWaiting > 0 ? (n.timeLagEstimated ? '~' : '') + secs(n.timeLagSeconds) : '-';
    const drain = n.secondsToDrain < 0 ? '-' : secs(n.secondsToDrain);
    let risk = '';
    if (n.messagesLost > 0) risk = ` title="${int(n.messagesLost)} messages removed by the stream's limits before delivery"`;
    else if (n.secondsToLoss >= 0) risk = ` title="the stream's limits remove undelivered messages in ${secs(n.secondsToLoss)}"`;
    const growth = n.lagGrowthRate > 0.005 ? '+' + rate(n.lagGrowthRate) : rate(n.lagGrowthRate);
    return `<tr class="node st-${esc(n.state)}" aria-rowindex="${i + 2}" data-id="${esc(n.id)}">` +
      `<th scope="row" title="${esc(n.stream + '/' + n.consumer)}">${esc(n.id)}</th>` +
      `<td title="${esc(groupName(n.group))}">${esc(groupName(n.group))}</td>` +
      `<td><span class="state s-${esc(n.state)}"${n.level ? ` title="${esc(n.level)}"` : ''}>${esc(label)}</span></td>` +
      `<td class="num">${int(n.messagesWaiting)}</td>` +
      `<td class="num${risk ? ' grow-up' : ''}"${risk}>${lag}</td>` +
      `<td class="num">${drain}</td>` +
      `<td title="${sparkTitle}"><svg class="spark" viewBox="0 0 100 22" preserveAspectRatio="none" role="img" aria-label="${sparkTitle}">${spark(n.points, page.history.points, max)}</svg></td>` +
      `<td class="num">${rate(n.deliveryRate)}</td>` +
      `<td class="num">${rate(n.ackRate)}</td>` +
      `<td class="num${n.lagGrowthRate > 0.5 ? ' grow-up' : ''}">${growth}</td>` +
      `<td class="num">${cadence}</td>` +
      `<td class="num" title="silent ${secs(n.secondsSinceLastAck)} now">${stall}</td></tr>`;
  }

  const spacer = (px) => `<tr class="spacer" aria-hidden="true" style="height:${px}px"><td colspan="${COLS}"></td></tr>`;

  function renderRows(page) {
    state.total = page.total;
    if (page.history.points > 1) {
      $('spark-h').textContent = 'Last ' + secs(page.history.step * (page.history.points - 1));
    }
    $('node-count').textContent = page.total === 1 ? '1 node' : int(page.total) + ' nodes';
    $('nodes').setAttribute('aria-rowcount', String(page.total + 1));
    if (page.total === 0) {
      const why = state.q ? 'No node matches the filter.' :
        state.group !== null ? 'No node in this group now.' : 'No nodes seen yet.';
      tbody.innerHTML = `<tr class="no-rows"><td colspan="${COLS}">${why}</td></tr>`;
      return;
    }
    const after = Math.max(0, page.total - page.offset - page.nodes.length);
    tbody.innerHTML = spacer(page.offset * ROW) +
      page.nodes.map((n, i) => rowHTML(n, page.offset + i, page)).join('') +
      spacer(after * ROW);
    // The list shrank under the view (a filter, nodes gone): fetch the
    // rows now in view.
    if (page.nodes.length === 0 && page.offset > 0 && range().first !== page.offset) state.again = true;
  }

  function range() {
    const top = Math.max(0, scroller.scrollTop - thead.offsetHeight);
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    // The list may not have grown to its full height yet: plan for the
    // window's.
    const view = Math.max(scroller.clientHeight, window.innerHeight);
    const count = Math.min(500, Math.ceil(view / ROW) + 2 * OVERSCAN);
    return { first, count };
  }

  // refreshRows fetches the rows in view. One request at a time: a call
  // while one is out asks for one more when it is back.
  function refreshRows() {
    if (state.fetching) {
      state.again = true;
      return;
    }
    const { first, count } = range();
    const p = new URLSearchParams({ offset: String(first), limit: String(count), sort: state.sort });
    if (state.q) p.set('q', state.q);
    if (state.group !== null) p.set('group', state.group);
    state.fetching = true;
    fetch('/api/nodes?' + p.toString(), { cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error('status ' + r.status))))
      .then(renderRows)
      .catch(() => { /* the stream's badge shows a lost engine; the next tick asks again */ })
      .finally(() => {
        state.fetching = false;
        if (state.again) {
          state.again = false;
          refreshRows();
        }
      });
  }

  let scrollQueued = false;
  scroller.addEventListener('scroll', () => {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      refreshRows();
    });
  }, { passive: true });
  window.addEventListener('resize', refreshRows);

  let filterTimer = 0;
  $('q').addEventListener('input', (e) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      state.q = e.target.value.trim();
      scroller.scrollTop = 0;
      refreshRows();
    }, 150);
  });
  $('sort').addEventListener('change', (e) => {
    state.sort = e.target.value;
    scroller.scrollTop = 0;
    refreshRows();
  });

  // ---- events ----

  const eventClass = (t) => (t.endsWith('.down') ? 'ev-down' : t.endsWith('.up') ? 'ev-up' :
    t === 'rules.reloaded' ? 'ev-rules' : 'ev-bad');

  function renderEvents(fresh) {
    $('no-events').hidden = state.events.length > 0;
    $('events').innerHTML = state.events.map((e) => {
      const what = [];
      if (e.node) what.push(`<b>${esc(e.node)}</b>`);
      if (e.pattern) what.push(`<span class="pattern">${esc(e.pattern)}</span>`);
      if (e.level) what.push(`<span class="level level-${esc(e.level)}">${esc(e.level)}</span>`);
      if (e.rule && e.rule !== e.pattern) what.push('rule ' + esc(e.rule));
      if (e.affected > 1 || (e.affected && !e.node)) what.push(int(e.affected) + ' nodes');
      if (e.detail) what.push(`<span class="muted">${esc(e.detail)}</span>`);
      const d = new Date(e.at);
      return `<li class="${eventClass(e.type)}${fresh.has(e.id) ? ' new' : ''}" data-type="${esc(e.type)}">` +
        `<time datetime="${d.toISOString()}">${clock(d)}</time>` +
        `<span class="etype">${esc(e.type)}</span><span class="ewhat" title="${esc(e.detail || '')}">${what.join(' ')}</span></li>`;
    }).join('');
  }

  function takeEvents(m) {
    const incoming = m.events || [];
    state.events = m.eventsReset ? incoming : incoming.concat(state.events).slice(0, MAX_EVENTS);
    const fresh = new Set();
    for (const e of incoming) {
      if (!state.seen.has(e.id) && !m.eventsReset) fresh.add(e.id);
    }
    state.seen = new Set(state.events.map((e) => e.id));
    if (incoming.length || m.eventsReset) renderEvents(fresh);
  }

  // ---- rules ----

  function renderRules(r) {
    $('rule-count').textContent = r.count === 1 ? '1 rule' : r.count + ' rules';
    const lr = r.lastReload;
    const box = $('reload');
    if (!lr) {
      box.className = 'reload';
      box.innerHTML = `As loaded at start from <code>${esc(r.files.join(', ') || 'the built-in ruleset')}</code>; no change since.`;
    } else if (lr.result === 'applied') {
      box.className = 'reload applied';
      box.innerHTML = `Last reload <b>applied</b> at ${clock(new Date(lr.at))}: ${int(lr.rules)} rules from <code>${esc((lr.files || []).join(', '))}</code>.`;
    } else {
      box.className = 'reload rejected';
      box.innerHTML = `Last reload <b>rejected</b> at ${clock(new Date(lr.at))}; the previous rules stay in force.` +
        `<ul>${(lr.errors || []).map((e) => `<li><code>${esc(e)}</code></li>`).join('')}</ul>`;
    }
    document.querySelector('#rules tbody').innerHTML = r.list.map((x) =>
      `<tr><td>${esc(x.name)}</td><td>${esc(x.scope)}</td><td>${esc(x.pattern)}</td>` +
      `<td><span class="level level-${esc(x.level)}">${esc(x.level)}</span></td><td><code>${esc(x.at)}</code></td></tr>`).join('');
  }

  // ---- the stream ----

  let lastRules = '';
  function onSummary(m) {
    state.summary = m;
    renderHeader(m);
    renderIncidents(m);
    renderGroups();
    takeEvents(m);
    const rules = JSON.stringify(m.rules);
    if (rules !== lastRules) {
      lastRules = rules;
      renderRules(m.rules);
    }
    refreshRows();
  }

  const es = new EventSource('/api/stream');
  es.addEventListener('message', (e) => {
    let m;
    try {
      m = JSON.parse(e.data);
    } catch (err) {
      return; // a torn message; the next tick sends a whole one
    }
    onSummary(m);
  });
  // EventSource reconnects by itself after the server's retry delay.
  es.addEventListener('error', () => {
    const h = $('health');
    h.className = 'badge unhealthy';
    h.textContent = 'engine unreachable: reconnecting…';
  });
})();

// The case list (#/cases?FILTERS): the cases of the token's scope, most
// urgent first, polled every few seconds so that a new case shows up
// without a reload. The filters live in the hash (never the token).
import { api } from './api.js';
import { fill, field, h, select } from './dom.js';
import { dateTime, name, t } from './i18n.js';
import {
  ALL_STATES, SEVERITIES, assigneeText, countdown, errorText, overdueBadge, severityBadge,
  stateBadge,
} from './ui.js';

const POLL_MS = 3000;
const PAGE = 200;
const FILTERS = ['street', 'community', 'grid', 'state', 'category', 'severity', 'overdue'];
const SEVERITY_RANK = { critical: 3, major: 2, minor: 1, info: 0 };

// Overdue first, then the graver, then the nearest deadline, then newest.
export function byUrgency(a, b) {
  if (a.overdue !== b.overdue) return a.overdue ? -1 : 1;
  const s = (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0);
  if (s) return s;
  const da = a.deadline_at ? Date.parse(a.deadline_at) : Infinity;
  const db = b.deadline_at ? Date.parse(b.deadline_at) : Infinity;
  if (da !== db) return da < db ? -1 : 1;
  return b.id - a.id;
}

export function listView(ctx, params) {
  const f = {};
  for (const k of FILTERS) f[k] = params.get(k) || '';
  if (!params.has('state')) f.state = 'open';

  let filtersOpen = null; // the filter box's state, kept across redraws
  const status = h('p', { class: 'list-status', id: 'list-status', 'aria-live': 'polite' });
  const body = h('div', { class: 'list-body', id: 'case-list' }, h('p', { class: 'loading' }, t('loading')));
  const el = h('section', { class: 'list' },
    h('div', { class: 'list-head' }, h('h1', {}, t('list.title')), status),
    filterForm(), body);

  let timer = null, stopped = false, seen = null, controller = null;

  function filterForm() {
    const streets = [...ctx.streets].sort((a, b) => a[0].localeCompare(b[0]));
    const communities = [...ctx.communities].filter(([, c]) => !f.street || c.street_id === f.street)
      .sort((a, b) => a[0].localeCompare(b[0]));
    const gridList = [...ctx.grids.values()]
      .filter((g) => (!f.street || g.street_id === f.street) && (!f.community || g.community_id === f.community))
      .sort((a, b) => a.id.localeCompare(b.id));
    const any = ['', t('list.any')];
    const controls = {
      street: select({ name: 'street' }, [any, ...streets.map(([id, n]) => [id, n || id])], f.street),
      community: select({ name: 'community' }, [any, ...communities.map(([id, c]) => [id, c.name || id])], f.community),
      grid: select({ name: 'grid' }, [any, ...gridList.map((g) => [g.id, g.name || g.id])], f.grid),
      state: select({ name: 'state' }, [['open', t('list.open')], ['all', t('list.any')],
        ...ALL_STATES.map((s) => [s, name('state', s)])], f.state),
      category: h('input', { name: 'category', type: 'search', value: f.category, list: 'categories', maxlength: 64 }),
      severity: select({ name: 'severity' }, [any, ...SEVERITIES.map((s) => [s, name('severity', s)])], f.severity),
      overdue: select({ name: 'overdue' }, [any, ['true', t('list.yes')], ['false', t('list.no')]], f.overdue),
    };
    const active = FILTERS.filter((k) => f[k] && !(k === 'state' && f[k] === 'open')).length;
    const form = h('form', { class: 'filters', id: 'filters' },
      ...FILTERS.map((k) => field(t(`list.${k}`), controls[k])),
      h('datalist', { id: 'categories' }),
      h('button', { type: 'reset', class: 'link' }, t('list.clear')));
    // Folded on a phone until opened, so that the cases come first.
    const box = h('details', { class: 'filter-box' },
      h('summary', {}, t('list.filters'), active ? ` (${active})` : ''), form);
    box.open = filtersOpen ?? !window.matchMedia('(max-width: 720px)').matches;
    box.addEventListener('toggle', () => { filtersOpen = box.open; });
    const apply = () => {
      for (const k of FILTERS) f[k] = controls[k].value.trim();
      // A narrower place that no longer fits the wider one is dropped.
      const c = ctx.communities.get(f.community);
      if (f.street && c && c.street_id !== f.street) f.community = '';
      const g = ctx.grids.get(f.grid);
      if (g && ((f.street && g.street_id !== f.street) || (f.community && g.community_id !== f.community))) f.grid = '';
      const q = new URLSearchParams();
      for (const k of FILTERS) if (f[k] && !(k === 'state' && f[k] === 'open')) q.set(k, f[k]);
      const hash = '#/cases' + (q.toString() ? '?' + q : '');
      history.replaceState(null, '', hash); // no hashchange: the view stays
      box.replaceWith(filterForm());
      seen = null;
      refresh();
    };
    form.addEventListener('change', apply);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(); });
    form.addEventListener('reset', (ev) => {
      ev.preventDefault();
      for (const k of FILTERS) controls[k].value = k === 'state' ? 'open' : '';
      apply();
    });
    return box;
  }

  async function load() {
    const q = { limit: PAGE, street: f.street, community: f.community, grid: f.grid, category: f.category,
      severity: f.severity, overdue: f.overdue };
    if (f.state && f.state !== 'all') q.state = f.state; // "open": the API's any-but-closed-or-cancelled
    controller = new AbortController();
    const answer = await api('GET', 'cases', { query: q, signal: controller.signal });
    const cases = answer.cases || [];
    cases.sort(byUrgency);
    return { cases, more: answer.next_cursor != null };
  }

  function row(c, fresh) {
    const g = ctx.grids.get(c.grid_id);
    const cell = (label, ...content) => h('td', { dataset: { label } }, ...content);
    return h('tr', { dataset: { caseId: c.id }, class: [c.overdue ? 'late' : '', fresh ? 'fresh' : ''].join(' ').trim() || null },
      cell(t('col.id'), h('a', { href: `#/cases/${c.id}` }, `#${c.id}`)),
      cell(t('col.title'), h('a', { href: `#/cases/${c.id}`, class: 'case-title' }, c.title || c.category)),
      cell(t('col.severity'), severityBadge(c.severity)),
      cell(t('col.state'), stateBadge(c.state), ' ', overdueBadge(c)),
      cell(t('col.grid'), g ? g.name : c.grid_id),
      cell(t('col.assignee'), assigneeText(c)),
      cell(t('col.timeleft'), c.deadline_at ? countdown(c.deadline_at, c.overdue) : '—'),
      cell(t('col.escalation'), name('escalation', c.escalation_level)),
      cell(t('col.opened'), dateTime(c.opened_at)));
  }

  function show({ cases, more }) {
    const fresh = new Set();
    if (seen) for (const c of cases) if (!seen.has(c.id)) fresh.add(c.id);
    seen = new Set(cases.map((c) => c.id));
    const datalist = el.querySelector('#categories');
    if (datalist) {
      const cats = [...new Set(cases.map((c) => c.category))].sort();
      fill(datalist, cats.map((c) => h('option', { value: c })));
    }
    if (!cases.length) {
      fill(body, h('p', { class: 'empty', id: 'list-empty' }, t('list.empty')));
    } else {
      const head = h('thead', {}, h('tr', {}, ['id', 'title', 'severity', 'state', 'grid', 'assignee', 'timeleft',
        'escalation', 'opened'].map((k) => h('th', { scope: 'col' }, t(`col.${k}`)))));
      fill(body, h('table', { class: 'cases' }, head, h('tbody', {}, cases.map((c) => row(c, fresh.has(c.id))))),
        more ? h('p', { class: 'hint' }, t('list.more', { n: PAGE })) : null);
    }
    fill(status, h('span', { class: 'live-dot' }), t('list.live'), ' · ', t('list.count', { n: cases.length }), ' · ',
      t('list.updated', { t: new Date().toLocaleTimeString(undefined, { hour12: false }) }));
  }

  async function refresh() {
    clearTimeout(timer);
    controller?.abort();
    try {
      const result = await load();
      if (stopped) return;
      show(result);
      status.classList.remove('stalled');
    } catch (e) {
      if (stopped || e.name === 'AbortError') return;
      status.classList.add('stalled');
      fill(status, e.status === 0 ? t('list.stalled') : errorText(e));
      if (seen === null) fill(body);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  // Polls only while the tab is visible; a hidden tab catches up on return.
  function poll() {
    if (document.hidden) timer = setTimeout(poll, POLL_MS);
    else refresh();
  }

  refresh();
  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
      controller?.abort();
    },
  };
}

// The figures (#/figures?from=DATE&to=DATE&group=KIND): GET /stats for the
// token's scope over a period, as a whole and per street, community or
// grid, with the rates as DESIGN.md defines them (结案率, 按期结案率, 返工率).
import { api } from './api.js';
import { append, fill, field, h, select } from './dom.js';
import { percent, t } from './i18n.js';
import { errorText, scopeLabel } from './ui.js';

const LEVELS = ['district', 'street', 'community', 'grid'];

function isoDay(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

// 'YYYY-MM-DD' -> that day's local midnight (plus `days`), as RFC 3339.
function dayStart(text, days = 0) {
  const [y, m, d] = text.split('-').map(Number);
  return new Date(y, m - 1, d + days).toISOString();
}

export function figuresView(ctx, params) {
  const today = new Date();
  const monthAgo = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 29);
  const valid = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s || '');
  const scopeLevel = ctx.me?.scope?.level;
  // Rows finer than the scope: a street's centre sees communities and grids.
  const groups = LEVELS.filter((l, i) => l === 'district' || !scopeLevel || i > LEVELS.indexOf(scopeLevel));
  const state = {
    from: valid(params.get('from')) ? params.get('from') : isoDay(monthAgo),
    to: valid(params.get('to')) ? params.get('to') : isoDay(today),
    group: groups.includes(params.get('group')) ? params.get('group') : (groups[1] || 'district'),
  };

  const from = h('input', { type: 'date', name: 'from', value: state.from, required: true });
  const to = h('input', { type: 'date', name: 'to', value: state.to, required: true });
  const group = select({ name: 'group' }, groups.map((g) => [g, t(`group.${g}`)]), state.group);
  const form = h('form', { class: 'filters', id: 'period' },
    field(t('fig.from'), from), field(t('fig.to'), to), field(t('fig.group'), group),
    h('button', { type: 'submit', class: 'primary' }, t('fig.show')));
  const out = h('div', { class: 'figures-out', id: 'figures' }, h('p', { class: 'loading' }, t('loading')));
  const el = h('section', { class: 'figures' }, h('h1', {}, t('fig.title')), form, out);
  let stopped = false;

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!valid(from.value) || !valid(to.value)) return;
    Object.assign(state, { from: from.value, to: to.value, group: group.value });
    history.replaceState(null, '', `#/figures?${new URLSearchParams(state)}`);
    load();
  });

  function placeName(kind, key) {
    if (kind === 'street') return ctx.streets.get(key) || key;
    if (kind === 'community') return ctx.communities.get(key)?.name || key;
    if (kind === 'grid') return ctx.grids.get(key)?.name || key;
    return scopeLabel(ctx.me?.scope) || key;
  }

  async function load() {
    fill(out, h('p', { class: 'loading' }, t('loading')));
    const period = { from: dayStart(state.from), to: dayStart(state.to, 1) };
    try {
      const [total, rows] = await Promise.all([
        api('GET', 'stats', { query: { ...period, group: 'district' } }),
        state.group === 'district' ? null : api('GET', 'stats', { query: { ...period, group: state.group } }),
      ]);
      if (stopped) return;
      show(total, rows);
    } catch (e) {
      if (!stopped) fill(out, h('p', { class: 'form-error', role: 'alert' }, errorText(e)));
    }
  }

  function tile(label, value, id, rate) {
    return h('div', { class: 'tile', id },
      h('div', { class: 'tile-value' }, value),
      rate != null ? h('meter', { min: 0, max: 1, low: 0.6, high: 0.85, optimum: 1, value: rate }) : null,
      h('div', { class: 'tile-label' }, label));
  }

  function show(total, rows) {
    const f = total.figures?.[0] || {};
    const tiles = h('div', { class: 'tiles' },
      tile(t('fig.closure_rate'), percent(f.closure_rate), 'fig-closure', f.closure_rate),
      tile(t('fig.on_time_rate'), percent(f.on_time_rate), 'fig-on-time', f.on_time_rate),
      tile(t('fig.rework_rate'), percent(f.rework_rate), 'fig-rework', null),
      tile(t('fig.urgent'), percent(f.urgent?.closure_rate), 'fig-urgent', f.urgent?.closure_rate),
      tile(t('fig.open_now'), String(f.open_now ?? 0), 'fig-open', null),
      tile(t('fig.overdue_now'), String(f.overdue_now ?? 0), 'fig-overdue', null),
      tile(t('fig.opened'), String(f.opened ?? 0), 'fig-opened', null));
    append(fill(out, h('p', { class: 'hint' }, t('fig.period', { from: state.from, to: state.to }))), tiles);
    if (!rows) return;
    const list = rows.figures || [];
    if (!list.length) {
      append(out, h('p', { class: 'empty' }, t('fig.none')));
      return;
    }
    const cols = ['opened', 'due', 'deferred', 'closed', 'closed_on_time', 'closure_rate', 'on_time_rate',
      'rework_rate', 'open_now', 'overdue_now'];
    const value = (r, k) => (k.endsWith('_rate') ? percent(r[k]) : String(k === 'due' ? r.due ?? r.dispatched : r[k] ?? 0));
    const sorted = [...list].sort((a, b) => String(a.key).localeCompare(String(b.key)));
    append(out, h('div', { class: 'table-wrap' }, h('table', { class: 'stats', id: 'stats-table' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('fig.place')), cols.map((k) => h('th', { scope: 'col' }, t(`fig.${k}`))))),
      h('tbody', {}, sorted.map((r) => h('tr', { dataset: { key: r.key } },
        h('th', { scope: 'row', dataset: { label: t('fig.place') } }, placeName(state.group, r.key)),
        cols.map((k) => h('td', { dataset: { label: t(`fig.${k}`) } }, value(r, k)))))))));
  }

  load();
  return { el, stop() { stopped = true; } };
}

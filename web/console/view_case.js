// One case (#/cases/42): what happened, where, by which rule and reading,
// its whole history, the time left in its step, and a form for each op
// the API says this token may make now (GET /cases/{id} "actions").
import { api, ApiError } from './api.js';
import { append, fill, field, h, safeHttpUrl, select } from './dom.js';
import { dateTime, name, namesOf, t } from './i18n.js';
import { assigneeText, countdown, errorText, overdueBadge, severityBadge, stateBadge } from './ui.js';

const POLL_MS = 3000;
// The ops whose note the API requires.
const NOTE_REQUIRED = new Set(['feedback', 'cancel', 'return', 'defer']);

export function caseView(ctx, id) {
  const el = h('section', { class: 'case', id: 'case' }, h('p', { class: 'loading' }, t('loading')));
  const banner = h('div', { class: 'banner', role: 'status', id: 'case-banner' });
  let shown = null;          // {case, history, actions} on screen
  let grid = null;           // GET /grids/{id}
  let timer = null, stopped = false, dirty = false;

  async function load() {
    const data = await api('GET', `cases/${id}`);
    if (!grid || grid.grid?.id !== data.case.grid_id) {
      try {
        grid = await api('GET', `grids/${encodeURIComponent(data.case.grid_id)}`);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
        grid = null;
      }
    }
    return data;
  }

  function show(data, message) {
    shown = data;
    dirty = false;
    const c = data.case;
    document.title = `#${c.id} ${c.title || ''} · ${t('app.short')}`;
    fill(banner, message ? h('span', { class: 'ok' }, message) : null);
    fill(el,
      h('p', {}, h('a', { href: '#/cases', class: 'back' }, `← ${t('case.back')}`)),
      h('header', { class: 'case-head' },
        h('h1', { id: 'case-title' }, h('span', { class: 'case-id' }, `#${c.id} `), c.title || c.category),
        h('div', { class: 'badges' }, severityBadge(c.severity), stateBadge(c.state), overdueBadge(c))),
      banner,
      h('div', { class: 'case-grid' },
        h('div', { class: 'case-main' }, facts(c), actionsBox(data), timeline(data.history || [])),
        h('aside', { class: 'case-side' }, gridBox(c), triggerBox(c, data.history || []))));
  }

  function facts(c) {
    const rows = [
      ['case.state', h('span', {}, stateBadge(c.state), ' ', overdueBadge(c))],
      ['case.timeleft', c.deadline_at ? h('span', { id: 'time-left' }, countdown(c.deadline_at, c.overdue)) : t('case.nodeadline')],
      ['case.escalation', h('span', { id: 'escalation' }, name('escalation', c.escalation_level))],
      ['case.assignee', assigneeText(c) || '—'],
      ['case.category', c.category],
      ['case.severity', severityBadge(c.severity)],
      ['case.detail', c.detail],
      ['case.count', c.count],
      ['case.rework', c.rework_count],
      ['case.returns', c.return_count],
      ['case.score', c.score],
      ['case.reporter', c.reporter],
      ['case.reported_by', c.reported_by],
      ['case.device', c.device_id],
      ['case.opened', dateTime(c.opened_at)],
      ['case.version', c.version],
    ];
    return h('dl', { class: 'facts card' }, rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
      .map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)]));
  }

  function gridBox(c) {
    const g = grid?.grid || ctx.grids.get(c.grid_id);
    const box = h('section', { class: 'card grid-box', id: 'grid-box' }, h('h2', {}, t('case.grid')));
    if (!g) return append(box, h('p', {}, c.grid_id));
    const roster = Object.entries(g.roster || {});
    append(box,
      h('p', { class: 'grid-name' }, g.name || g.id),
      h('dl', { class: 'facts' },
        h('dt', {}, t('case.street')), h('dd', {}, g.street || g.street_id),
        h('dt', {}, t('case.community')), h('dd', {}, g.community || g.community_id),
        h('dt', {}, t('case.gtype')), h('dd', {}, name('gtype', g.type)),
        h('dt', {}, t('case.glevel')), h('dd', {}, name('glevel', g.level))),
      roster.length ? h('h3', {}, t('case.roster')) : null,
      roster.length ? h('ul', { class: 'roster' }, roster.map(([role, person]) =>
        h('li', { class: role === c.assignee_role ? 'assigned' : null },
          h('span', { class: 'roster-role' }, name('role', role)), ' ', person))) : null);
    const template = ctx.me?.links?.grafana_grid;
    // The gateway's link to the grid dashboard, its variables filled in.
    const vars = { grid: g.id, community: g.community_id, street: g.street_id };
    const href = template ? safeHttpUrl(template.replace(/\{(grid|community|street)\}/g,
      (m, k) => encodeURIComponent(vars[k] ?? ''))) : null;
    if (href) {
      append(box, h('p', {}, h('a', { href, id: 'grafana-link', target: '_blank', rel: 'noopener noreferrer' },
        `${t('case.grafana')} ↗`)));
    }
    return box;
  }

  function triggerBox(c, history) {
    const trigger = c.trigger || history.find((r) => r.trigger)?.trigger;
    const box = h('section', { class: 'card trigger-box', id: 'trigger-box' });
    if (c.rule || c.rule_file || c.rule_hash) {
      append(box, h('h2', {}, t('case.provenance')), h('dl', { class: 'facts' },
        h('dt', {}, t('case.rule')), h('dd', {}, c.rule || '—'),
        c.rule_file ? [h('dt', {}, t('case.rule_file')), h('dd', { class: 'mono' }, c.rule_file)] : null,
        c.rule_hash ? [h('dt', {}, t('case.rule_hash')), h('dd', { class: 'mono hash', title: c.rule_hash },
          c.rule_hash.slice(0, 16) + '…')] : null));
    }
    if (trigger && typeof trigger === 'object') {
      const fields = Object.entries(trigger.fields || {});
      append(box, h('h2', {}, t('case.trigger')), h('dl', { class: 'facts', id: 'trigger' },
        h('dt', {}, t('case.device')), h('dd', { class: 'mono' }, trigger.device || '—'),
        Number.isFinite(trigger.ts) ? [h('dt', {}, t('case.reading_time')), h('dd', {}, dateTime(trigger.ts))] : null,
        fields.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', { class: 'mono' }, JSON.stringify(v))])));
    }
    return box.childNodes.length ? box : null;
  }

  function historyLabel(r) {
    if (r.from == null) return t('hist.created');
    if (r.from === r.to) return t('hist.same');
    if (r.from === 'handled' && r.to === 'dispatched') return t('hist.rework');
    if (r.from === 'dispatched' && r.to === 'reported') return t('hist.returned');
    if (r.from === 'deferred' && r.to === 'dispatched') return t('hist.resumed');
    return name('state', r.to);
  }

  function timeline(history) {
    return h('section', { class: 'card' }, h('h2', {}, t('case.history')),
      h('ol', { class: 'timeline', id: 'timeline' }, history.map((r) =>
        h('li', { class: `step to-${r.to}${r.from === r.to ? ' same' : ''}`, dataset: { to: r.to || '', from: r.from || '' } },
          h('div', { class: 'step-head' },
            h('span', { class: 'step-name' }, historyLabel(r)),
            h('time', { datetime: r.at }, dateTime(r.at))),
          h('div', { class: 'step-actor mono' }, r.actor),
          r.note ? h('p', { class: 'step-note' }, r.note) : null))));
  }

  function actionsBox(data) {
    const actions = data.actions || [];
    const box = h('section', { class: 'card actions', id: 'actions' }, h('h2', {}, t('case.actions')));
    if (!actions.length) return append(box, h('p', { class: 'hint', id: 'no-actions' }, t('case.noactions')));
    for (const op of actions) append(box, actionForm(data.case, op));
    return box;
  }

  function noteField(op, required) {
    return field(t(required ? 'form.note_required' : 'form.note'),
      h('textarea', { name: 'note', rows: 2, maxlength: 2000 }));
  }

  // One op as a form; only what the API's "actions" named is drawn.
  function actionForm(c, op) {
    const error = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: `action action-${op}`, dataset: { op } }, h('h3', {}, name('op', op)));
    const submit = (label, value, cls) => h('button', { type: 'submit', class: cls || 'primary', value: value ?? '' }, label);
    if (op === 'dispatch') {
      const g = grid?.grid || ctx.grids.get(c.grid_id);
      const roster = Object.entries(g?.roster || {});
      append(form,
        field(t('form.role'), select({ name: 'role' }, namesOf('role').map((r) => [r, name('role', r)]),
          c.assignee_role || 'manager')),
        field(t('form.person'), select({ name: 'person' }, [['', t('form.person_default')],
          ...roster.map(([role, person]) => [person, `${person}（${name('role', role)}）`])], '')),
        noteField(op, false), submit(name('op', op)));
    } else if (op === 'verify') {
      append(form, noteField(op, false), h('div', { class: 'buttons' },
        submit(t('form.pass'), 'pass', 'primary'), submit(t('form.fail'), 'fail', 'danger')));
    } else if (op === 'evaluate') {
      append(form, field(t('form.score'), select({ name: 'score' }, [5, 4, 3, 2, 1].map((s) => [s, '★'.repeat(s)]), 5)),
        noteField(op, false), submit(name('op', op)));
    } else {
      append(form, noteField(op, NOTE_REQUIRED.has(op)),
        submit(name('op', op), '', op === 'cancel' ? 'danger' : 'primary'));
    }
    append(form, error);
    form.addEventListener('input', () => { dirty = true; });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const values = Object.fromEntries(new FormData(form));
      const body = { version: c.version };
      if (values.note && values.note.trim()) body.note = values.note.trim();
      if (op === 'dispatch') {
        body.role = values.role;
        if (values.person) body.person = values.person;
      } else if (op === 'verify') {
        body.pass = ev.submitter?.value === 'pass';
      } else if (op === 'evaluate') {
        body.score = Number(values.score);
      }
      const buttons = form.querySelectorAll('button');
      buttons.forEach((b) => { b.disabled = true; });
      fill(error);
      try {
        await api('POST', `cases/${c.id}/${op}`, { body });
        const fresh = await load();
        if (!stopped) show(fresh, t('case.done', { op: name('op', op) }));
      } catch (e) {
        buttons.forEach((b) => { b.disabled = false; });
        if (e instanceof ApiError && e.code === 'stale') {
          fill(error, t('case.stale'), ' ', reloadButton());
        } else {
          fill(error, errorText(e));
        }
      }
    });
    return form;
  }

  function reloadButton() {
    const b = h('button', { type: 'button', class: 'link reload' }, t('case.reload'));
    b.addEventListener('click', () => refresh(true));
    return b;
  }

  async function refresh(force) {
    clearTimeout(timer);
    try {
      const data = await load();
      if (stopped) return;
      const changed = !shown || data.case.version !== shown.case.version;
      // Someone else moved the case: redraw, unless a form is being filled
      // in, which the user would lose; then say so and let them reload.
      if (force || (changed && !dirty)) show(data);
      else if (changed) fill(banner, h('span', {}, t('case.changed')), ' ', reloadButton());
    } catch (e) {
      if (stopped) return;
      if (e instanceof ApiError && e.status === 404) {
        fill(el, h('p', {}, h('a', { href: '#/cases', class: 'back' }, `← ${t('case.back')}`)),
          h('p', { class: 'notfound', id: 'case-notfound' }, t('case.notfound')));
        return; // nothing to poll
      }
      if (!shown) fill(el, h('p', { class: 'form-error', role: 'alert' }, errorText(e)));
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  // Polls only while the tab is visible.
  function poll() {
    if (document.hidden) timer = setTimeout(poll, POLL_MS);
    else refresh(false);
  }

  refresh(true);
  return { el, stop() { stopped = true; clearTimeout(timer); } };
}

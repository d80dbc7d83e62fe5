// Small pieces the views share: error messages, labels, badges, and the
// countdowns that show the time left in a case's step.
import { ApiError, now } from './api.js';
import { h } from './dom.js';
import { duration, name, t } from './i18n.js';

export function errorText(e) {
  if (!(e instanceof ApiError)) return String(e?.message || e);
  if (e.status === 0) return t('err.network');
  const key = { forbidden: 'err.forbidden', conflict: 'err.conflict', bad_request: 'err.bad_request' }[e.code];
  return t(key || 'err.generic', { status: e.status, detail: e.detail || e.code });
}

export function scopeLabel(scope) {
  if (!scope) return '';
  if (scope.level === 'district') return scope.name || t('scope.district');
  return scope.name || `${scope.level}:${scope.id}`;
}

// Every element with data-deadline shows the time left to it, or how far
// past it the step is, on the gateway's clock; ticked once a second.
export function countdown(deadline, overdue) {
  const el = h('span', { class: 'countdown', dataset: { deadline: deadline || '' } });
  if (overdue) el.dataset.overdue = '1';
  tick(el);
  return el;
}

function tick(el) {
  const at = Date.parse(el.dataset.deadline);
  if (Number.isNaN(at)) {
    el.textContent = '—';
    return;
  }
  const left = at - now();
  const overdue = el.dataset.overdue === '1';
  // The gateway's overdue flag wins over a clock that is a little behind.
  if (left < 0) el.textContent = t('time.over', { d: duration(-left) });
  else el.textContent = overdue ? t('case.overdue') : t('time.left', { d: duration(left) });
  el.classList.toggle('late', left < 0 || overdue);
}

export function tickAll() {
  for (const el of document.querySelectorAll('.countdown[data-deadline]')) tick(el);
}

export function severityBadge(sev) {
  return h('span', { class: `badge sev-${sev}` }, name('severity', sev));
}

export function stateBadge(state) {
  return h('span', { class: `badge state-${state}` }, name('state', state));
}

export function overdueBadge(c) {
  return c.overdue ? h('span', { class: 'badge overdue' }, t('case.overdue')) : null;
}

// "网格消防员 许鹏丽" / "grid firefighter 许鹏丽" / "".
export function assigneeText(c) {
  return [c.assignee_role ? name('role', c.assignee_role) : '', c.assignee || ''].filter(Boolean).join(' ');
}

export const ALL_STATES = ['reported', 'dispatched', 'handled', 'verified', 'evaluated', 'closed', 'cancelled', 'deferred'];
export const SEVERITIES = ['critical', 'major', 'minor', 'info'];
